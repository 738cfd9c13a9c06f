"""Settings for the stacks the tests run: the shared test stack and throw-away ones."""

from __future__ import annotations

from pathlib import Path

from realchat.config import StackSettings
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


def throwaway_stack(state_dir: Path, kafka_nodes: int = 1) -> StackSettings:
    """A stack on free ports in `state_dir` (a tmp dir), for tests that kill or restart things."""
    base = free_port_block()
    return StackSettings(
        state_dir=state_dir,
        kafka_libs_dir=TEST_STACK.kafka_libs_dir,
        postgres_port=base + 2,
        redis_port=base + 3,
        kafka_port=base + 10,
        kafka_nodes=kafka_nodes,
        kafka_heap_mb=320,
    )
