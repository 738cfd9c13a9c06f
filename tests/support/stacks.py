"""Settings for the stacks the tests run: the shared test stack and throw-away ones."""

from __future__ import annotations

from pathlib import Path

from realchat.config import ChatSettings, KafkaSettings, OutboxSettings, Settings, StackSettings
from tests.support.ports import free_port_block

ROOT = Path(__file__).resolve().parents[2]

#: The suite's shared stack: its own ports and dir, so it runs beside `make run`'s dev stack.
TEST_STACK = StackSettings(
    state_dir=ROOT / "var" / "test",
    kafka_libs_dir=ROOT / ".cache" / "kafka" / "libs",
    postgres_port=25432,
    redis_port=26379,
    kafka_port=29092,
    kafka_heap_mb=384,
)


def throwaway_stack(
    state_dir: Path, kafka_nodes: int = 1, base: int | None = None
) -> StackSettings:
    """A stack on free ports in `state_dir` (a tmp dir), for tests that kill or restart things."""
    base = base or free_port_block()
    return StackSettings(
        state_dir=state_dir,
        kafka_libs_dir=TEST_STACK.kafka_libs_dir,
        postgres_port=base + 2,
        redis_port=base + 3,
        kafka_port=base + 10,
        kafka_nodes=kafka_nodes,
        kafka_heap_mb=320,
    )


def throwaway_settings(state_dir: Path, kafka_nodes: int = 1) -> Settings:
    """Settings of a whole throw-away stack, services included, all on free ports."""
    base = free_port_block(offsets=(0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 20, 21))
    return Settings(
        stack=throwaway_stack(state_dir, kafka_nodes, base),
        kafka=KafkaSettings(partitions=6),
        chat=ChatSettings(grpc_port=base + 4, ops_port=base + 5),
        outbox=OutboxSettings(ops_port=base + 6),
    )


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
    }
