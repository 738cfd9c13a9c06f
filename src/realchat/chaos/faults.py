"""The fault schedule: what is killed, how it comes back. Each fault returns when the component
is running and ready again; the checker measures recovery from what the clients recorded."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from realchat.stack.supervisor import Stack

Inject = Callable[[Stack], Awaitable[None]]


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    run: Inject


def _kill_and_restart(*names: str, down_s: float) -> Inject:
    async def run(stack: Stack) -> None:
        for name in names:
            await stack.kill_component(name, signal.SIGKILL)
        await asyncio.sleep(down_s)
        for name in names:
            await stack.start_component(name)

    return run


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            "kafka-broker",
            "SIGKILL one of three Kafka nodes for 10 s (RF 3, min ISR 2), then restart it",
            _kill_and_restart("kafka-2", down_s=10),
        ),
        Fault(
            "chat-mid-transaction",
            "SIGKILL the chat service with sends in flight, restart it after 2 s",
            _kill_and_restart("chat", down_s=2),
        ),
        Fault(
            "outbox-publisher",
            "SIGKILL one of two outbox publishers, restart it after 5 s",
            _kill_and_restart("outbox-publisher-1", down_s=5),
        ),
        Fault(
            "gateway",
            "SIGKILL one of two gateways during consumption, restart it after 3 s",
            _kill_and_restart("gateway-1", down_s=3),
        ),
        Fault(
            "redis",
            "SIGKILL Redis and restart it empty (no persistence)",
            _kill_and_restart("redis", down_s=1),
        ),
        Fault(
            "postgres",
            "SIGKILL PostgreSQL (crash recovery on restart), restart it after 3 s",
            _kill_and_restart("postgres", down_s=3),
        ),
        Fault(
            "combined",
            "SIGKILL a Kafka node, a gateway, a publisher and the chat service together",
            _kill_and_restart("kafka-3", "gateway-2", "outbox-publisher-2", "chat", down_s=5),
        ),
    )
}
