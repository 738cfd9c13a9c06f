#!/bin/sh
# Entrypoint of the realchat image: `docker run IMAGE <realchat subcommand> [arguments]`.
set -eu

# A gateway reads every event through a Kafka consumer group of its own, named after its
# instance id. Replicas made by `docker compose up --scale gateway=N` share one environment, so
# unless an id is given, each takes its container's hostname: unique per container, and the same
# after a restart of that container (which then takes its partitions straight back).
if [ "${1:-}" = "gateway" ] && [ -z "${REALCHAT_GATEWAY__INSTANCE_ID:-}" ]; then
    REALCHAT_GATEWAY__INSTANCE_ID="${HOSTNAME:-$(hostname)}"
    export REALCHAT_GATEWAY__INSTANCE_ID
fi

exec realchat "$@"
