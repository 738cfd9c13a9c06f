#!/bin/sh
# KAFKA_* variables -> server.properties (KAFKA_LOG_DIRS -> log.dirs, as the official image maps
# them; KAFKA_HEAP_OPTS is the JVM's), storage formatted with CLUSTER_ID once, then the broker.
set -eu
: "${CLUSTER_ID:?CLUSTER_ID is required}"
config=/opt/kafka/config/server.properties
: > "$config"
env | sort | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS) ;;
    KAFKA_*)
      key=$(printf '%s' "${name#KAFKA_}" | tr 'A-Z_' 'a-z.')
      printf '%s=%s\n' "$key" "$value" >> "$config"
      ;;
  esac
done
log_dirs=$(sed -n 's/^log\.dirs=//p' "$config")
classpath='/opt/kafka/libs/*'
if [ ! -f "${log_dirs%%,*}/meta.properties" ]; then
  java -Xmx256m -cp "$classpath" kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$config"
fi
# shellcheck disable=SC2086 # the options are a list
exec java ${KAFKA_HEAP_OPTS:--Xms1g -Xmx1g} -XX:+UseG1GC -Djava.awt.headless=true \
  -cp "$classpath" kafka.Kafka "$config"
