#!/usr/bin/env bash
# `make compose-test`: the compose deployment built and run for real, then checked from outside.
#
#   1. a Docker engine: the one DOCKER_HOST names if it answers, else dockerd started here
#      (storage driver vfs, no iptables, no default bridge; its data in var/docker/), stopped at
#      the end;
#   2. images from reachable sources only: BASE_IMAGE (default: a Debian 12 image made with
#      mmdebstrap and `docker import` when none is given), RealChat's image from
#      deployments/Dockerfile, the infrastructure stand-ins of deployments/images/;
#      COMPOSE_TEST_FRESH=1 removes the images of earlier runs first and builds without the
#      layer cache (from a clean state: nothing reused);
#   3. the deployment (deployments/docker-compose.yml + docker-compose.local-images.yml) with
#      three gateways behind HAProxy, fresh secrets and keys in var/compose/, its own project
#      name and ports (a deployment of the user's is not touched);
#   4. the black-box checks (tests/compose/, pytest -m compose): contract, every device, sync
#      after offline, authorization, slow consumer, a gateway container killed mid-traffic;
#      report in reports/compose-test.{json,txt};
#   5. everything torn down, volumes included.
#
# Docker Compose itself (v5, a Go program) is built once from the Go module proxy into
# .cache/docker-compose/ when `docker compose` is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
root=$PWD
work=$root/var/compose
mkdir -p "$work"

# -- tools ---------------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

COMPOSE_VERSION=5.6.0
compose_bin=$root/.cache/docker-compose/docker-compose
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  if ! "$compose_bin" version 2>/dev/null | grep -q "v$COMPOSE_VERSION"; then
    say "building Docker Compose $COMPOSE_VERSION from the Go module proxy (once)"
    # `go install module@version` refuses modules whose go.mod has exclude directives: build
    # it from a throw-away module that requires it.
    build=$(mktemp -d)
    printf 'module composebuild\n\ngo 1.24\n' > "$build/go.mod"
    (cd "$build" && GOFLAGS=-mod=mod go get "github.com/docker/compose/v5@v$COMPOSE_VERSION" \
      && GOFLAGS=-mod=mod go build -trimpath -ldflags \
        "-X github.com/docker/compose/v5/internal.Version=v$COMPOSE_VERSION" \
        -o "$compose_bin" github.com/docker/compose/v5/cmd)
    rm -rf "$build"
  fi
  compose=("$compose_bin")
fi

# -- engine --------------------------------------------------------------------------------------
started_engine=""
if ! docker info >/dev/null 2>&1; then
  sock=$root/var/docker/docker.sock
  export DOCKER_HOST=unix://$sock
  if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (data in var/docker)"
    mkdir -p var/docker
    dockerd --storage-driver=vfs --iptables=false --bridge=none \
      --data-root "$root/var/docker/data" --exec-root "$root/var/docker/exec" \
      --host "$DOCKER_HOST" --pidfile "$root/var/docker/docker.pid" \
      > "$root/var/docker/dockerd.log" 2>&1 &
    started_engine=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null
  fi
fi

project=(-p realchat-compose-test -f deployments/docker-compose.yml
  -f deployments/docker-compose.local-images.yml --env-file "$work/.env")
cleanup() {
  status=$?
  if [ -f "$work/.env" ]; then
    "${compose[@]}" "${project[@]}" logs --no-color > "$work/compose.log" 2>&1 || true
    "${compose[@]}" "${project[@]}" down --volumes --remove-orphans > /dev/null 2>&1 || true
  fi
  if [ -n "$started_engine" ]; then
    kill "$started_engine" 2>/dev/null && wait "$started_engine" 2>/dev/null || true
  fi
  exit $status
}
trap cleanup EXIT

# -- images --------------------------------------------------------------------------------------
export DOCKER_BUILDKIT=0  # the classic builder: no buildx plugin needed
fresh=${COMPOSE_TEST_FRESH:-0}
build_flags=()
build_started=$(date +%s)
if [ "$fresh" = 1 ]; then
  say "COMPOSE_TEST_FRESH=1: removing the images of earlier runs; every image is made again"
  docker image ls --format '{{.Repository}}:{{.Tag}}' \
    | grep -E '^(realchat|realchat-base|realchat-local/[a-z]+):' \
    | xargs -r docker image rm --force > /dev/null
  build_flags=(--no-cache)
fi
build() { docker build --quiet --network host "${build_flags[@]}" "$@" > /dev/null; }
if [ -z "${BASE_IMAGE:-}" ]; then
  BASE_IMAGE=realchat-base:bookworm
  if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "making the base image $BASE_IMAGE with mmdebstrap (Debian 12)"
    mmdebstrap --quiet --variant=apt --include=python3,python3-venv,python-is-python3,ca-certificates \
      bookworm "$work/base-rootfs.tar" http://deb.debian.org/debian
    docker import "$work/base-rootfs.tar" "$BASE_IMAGE" > /dev/null
    rm -f "$work/base-rootfs.tar"
  fi
fi
# Builds behind a TLS-inspecting proxy need its CA (deployments/docker/build-ca/README.md).
cp /etc/ssl/certs/ca-certificates.crt deployments/docker/build-ca/ca-certificates.crt
say "building realchat:local"
build --build-arg PYTHON_IMAGE="$BASE_IMAGE" -t realchat:local -f deployments/Dockerfile .
for name in postgres redis haproxy prometheus; do
  say "building realchat-local/$name:bookworm"
  build --build-arg BASE_IMAGE="$BASE_IMAGE" -t "realchat-local/$name:bookworm" "deployments/images/$name"
done
say "building realchat-local/kafka:4.1.1"
rm -rf "$work/kafka-context" && mkdir -p "$work/kafka-context"
cp -a .cache/kafka/libs "$work/kafka-context/libs"
cp -a deployments/images/kafka/bin "$work/kafka-context/bin"
build --build-arg BASE_IMAGE="$BASE_IMAGE" -t realchat-local/kafka:4.1.1 \
  -f deployments/images/kafka/Dockerfile "$work/kafka-context"
build_s=$(( $(date +%s) - build_started ))
say "images ready after $build_s s"

# -- configuration: fresh secrets, its own ports ----------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret() { openssl rand -hex 32; }
secrets=$work/secrets
rm -rf "$secrets" && mkdir -p "$secrets"
openssl genpkey -algorithm ed25519 -out "$secrets/auth-signing-key.pem"
openssl pkey -in "$secrets/auth-signing-key.pem" -pubout -out "$secrets/auth-signing-key.pub.pem"
chmod 0400 "$secrets/auth-signing-key.pem" && chmod 0444 "$secrets/auth-signing-key.pub.pem"
chown 10001:10001 "$secrets"/*.pem
public_port=$(free_port)
cat > "$work/.env" <<EOF
POSTGRES_PASSWORD=$(secret)
REDIS_PASSWORD=$(secret)
REALCHAT_CHAT__INTERNAL_TOKEN=$(secret)
GRAFANA_ADMIN_PASSWORD=$(secret)
KAFKA_CLUSTER_ID=$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode().replace("-", "A"))')
SECRETS_DIR=$secrets
KAFKA_HEAP=512m
# Every check's accounts come from this host's one address (the bridge's gateway).
REALCHAT_AUTH__SIGNUPS_PER_ADDRESS=1000
IMAGE=realchat:local
PUBLIC_PORT=$public_port
PROMETHEUS_PORT=$(free_port)
GRAFANA_PORT=$(free_port)
EOF

# -- up, check, down -------------------------------------------------------------------------------
services=(postgres redis kafka migrate create-topics auth chat outbox-publisher presence gateway
  balancer prometheus)
# From a clean state: whatever an interrupted run left (containers, volumes) goes first.
"${compose[@]}" "${project[@]}" down --volumes --remove-orphans > /dev/null 2>&1 || true
say "starting the deployment: ${services[*]} (3 gateways)"
started=$(date +%s)
"${compose[@]}" "${project[@]}" up --detach --no-build --wait --wait-timeout 600 \
  --scale gateway=3 "${services[@]}"
say "deployment healthy after $(( $(date +%s) - started )) s"

REALCHAT_COMPOSE_URL=http://127.0.0.1:$public_port \
REALCHAT_COMPOSE_COMMAND="${compose[*]} ${project[*]}" \
REALCHAT_COMPOSE_STARTUP_S=$(( $(date +%s) - started )) \
REALCHAT_COMPOSE_BUILD_S=$build_s REALCHAT_COMPOSE_FRESH=$fresh \
  .venv/bin/pytest -q -m compose -p no:cacheprovider tests/compose
