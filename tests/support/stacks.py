"""Settings for the stacks the tests run: the shared test stack and throw-away ones."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from realchat.config import PresenceSettings, Settings, StackSettings
from realchat.stack.layout import block_offsets, block_settings, block_stack
from realchat.stack.postgres import Postgres
from realchat.stack.supervisor import Stack
from tests.support.ports import free_port_block

ROOT = Path(__file__).resolve().parents[2]

#: Moves the shared test stack's ports (e.g. to run two checkouts' suites at once).
PORT_OFFSET = int(os.environ.get("REALCHAT_TEST_PORT_OFFSET", "0"))

#: The suite's shared stack: its own ports and dir, so it runs beside `make run`'s dev stack.
TEST_STACK = StackSettings(
    state_dir=ROOT / "var" / "test",
    kafka_libs_dir=ROOT / ".cache" / "kafka" / "libs",
    postgres_port=25432 + PORT_OFFSET,
    redis_port=26379 + PORT_OFFSET,
    kafka_port=29092 + PORT_OFFSET,
    kafka_heap_mb=384,
    gateways=1,
    # Prometheus (port 9090 by default) only where a test asks for it: tests/e2e/test_dashboards.py.
    prometheus=False,
)


#: Presence timings of the test stacks: seconds instead of a minute, so expiry and sweep
#: behaviour is observable within a test (the ratios are the production ones: TTL = 3 beats).
FAST_PRESENCE = PresenceSettings(heartbeat_s=1.0, key_ttl_s=3, sweep_interval_s=2.0)


#: State dirs of this session's throw-away stacks. Their PostgreSQL data lives outside them when
#: the `postgres` user cannot enter pytest's private tmp dirs (the fallback dir), where pytest's
#: own tmp cleanup never reaches: `purge_throwaway_data` deletes it.
_THROWAWAY_DIRS: set[Path] = set()


def purge_throwaway_data(finished_only: bool = True) -> list[Path]:
    """Delete the PostgreSQL data of the throw-away stacks whose server is stopped; with
    `finished_only`, only of those brought `down` (no stack.json), so a stack that a test
    stopped on purpose and a later test restarts keeps its data. Returns what was deleted."""
    removed = []
    for state_dir in sorted(_THROWAWAY_DIRS):
        if finished_only and (state_dir / "stack.json").exists():
            continue
        postgres = Postgres(state_dir=state_dir, host="127.0.0.1", port=0, database="")
        try:
            gone = postgres.remove_data()
        except RuntimeError:  # its server still runs: a later call gets it
            continue
        if gone is not None:  # the dir stays listed: its stack may be started again
            removed.append(gone)
    return removed


def throwaway_stack(
    state_dir: Path,
    kafka_nodes: int = 1,
    base: int | None = None,
    gateways: int = 1,
    publishers: int = 1,
) -> StackSettings:
    """A stack on free ports in `state_dir` (a tmp dir), for tests that kill or restart things.
    Its data is deleted after the test that brought it down (`purge_throwaway_data`)."""
    _THROWAWAY_DIRS.add(state_dir.resolve())
    return block_stack(
        state_dir,
        base or free_port_block(),
        kafka_nodes,
        gateways,
        publishers,
        kafka_libs_dir=TEST_STACK.kafka_libs_dir,
    )


def throwaway_settings(
    state_dir: Path,
    kafka_nodes: int = 1,
    gateways: int = 1,
    publishers: int = 1,
    fault_links: bool = False,
) -> Settings:
    """Settings of a whole throw-away stack, services included, all on free ports; with
    `fault_links`, its PostgreSQL and Kafka links go through a fault proxy."""
    base = free_port_block(offsets=block_offsets(kafka_nodes, gateways, publishers))
    stack = throwaway_stack(state_dir, kafka_nodes, base, gateways, publishers)
    stack = stack.model_copy(update={"fault_links": fault_links})
    return block_settings(stack, base, FAST_PRESENCE)


def settings_env(settings: Settings) -> dict[str, str]:
    """The REALCHAT_* variables that make a `realchat` subprocess use `settings`."""
    stack = settings.stack
    return {
        "REALCHAT_STACK__STATE_DIR": str(stack.state_dir),
        "REALCHAT_STACK__KAFKA_LIBS_DIR": str(stack.kafka_libs_dir),
        "REALCHAT_STACK__POSTGRES_PORT": str(stack.postgres_port),
        "REALCHAT_STACK__REDIS_PORT": str(stack.redis_port),
        "REALCHAT_STACK__KAFKA_PORT": str(stack.kafka_port),
        "REALCHAT_STACK__KAFKA_NODES": str(stack.kafka_nodes),
        "REALCHAT_STACK__KAFKA_HEAP_MB": str(stack.kafka_heap_mb),
        "REALCHAT_KAFKA__PARTITIONS": str(settings.kafka.partitions),
        "REALCHAT_CHAT__GRPC_PORT": str(settings.chat.grpc_port),
        "REALCHAT_CHAT__OPS_PORT": str(settings.chat.ops_port),
        "REALCHAT_OUTBOX__OPS_PORT": str(settings.outbox.ops_port),
        "REALCHAT_PRESENCE__OPS_PORT": str(settings.presence.ops_port),
        "REALCHAT_PRESENCE__HEARTBEAT_S": str(settings.presence.heartbeat_s),
        "REALCHAT_PRESENCE__KEY_TTL_S": str(settings.presence.key_ttl_s),
        "REALCHAT_PRESENCE__SWEEP_INTERVAL_S": str(settings.presence.sweep_interval_s),
        "REALCHAT_STACK__GATEWAYS": str(stack.gateways),
        "REALCHAT_STACK__PUBLISHERS": str(stack.publishers),
        "REALCHAT_STACK__PUBLISHER_OPS_PORT": str(stack.publisher_ops_port),
        "REALCHAT_STACK__GATEWAY_PORT": str(stack.gateway_port),
        "REALCHAT_STACK__PROMETHEUS": str(stack.prometheus).lower(),
        "REALCHAT_STACK__PROMETHEUS_PORT": str(stack.prometheus_port),
        "REALCHAT_HTTP__PORT": str(settings.http.port),
        "REALCHAT_AUTH__HTTP_PORT": str(settings.auth.http_port),
        "REALCHAT_AUTH__OPS_PORT": str(settings.auth.ops_port),
        "REALCHAT_AUTH__URL": settings.auth.url,
        "REALCHAT_GATEWAY__OPS_PORT": str(settings.gateway.ops_port),
    }


@asynccontextmanager
async def own_kafka(state_dir: Path, nodes: int = 1) -> AsyncIterator[Stack]:
    """A Kafka of a test's own (topics created), for tests that kill or restart brokers."""
    broker = Stack(
        Settings(stack=throwaway_stack(state_dir, kafka_nodes=nodes)),
        include={"kafka"},
        report=print,
    )
    try:
        await broker.up()
        yield broker
    finally:
        await broker.down()
