#!/bin/sh
# Entrypoint of the realchat image: `docker run IMAGE <realchat subcommand> [arguments]`.
set -eu

# A gateway reads every event through a Kafka consumer group of its own, named after its
# instance id (plus a suffix new for each process). Replicas made by `docker compose up --scale
# gateway=N` share one environment, so unless an id is given, each takes its container's
# hostname: the groups then say which container they belong to.
if [ "${1:-}" = "gateway" ] && [ -z "${REALCHAT_GATEWAY__INSTANCE_ID:-}" ]; then
    REALCHAT_GATEWAY__INSTANCE_ID="${HOSTNAME:-$(hostname)}"
    export REALCHAT_GATEWAY__INSTANCE_ID
fi

exec realchat "$@"
