"""The fault schedule: what is killed or cut off, how it comes back. Each fault returns when the
component is running and ready again, or the link healed; the checker measures recovery from what
the clients recorded.

Process faults SIGKILL components. Link faults slow down or partition the network between two
components through the stack's fault proxy (`stack.faultproxy`: the chat service to PostgreSQL,
the gateways to Kafka, the outbox publishers to Kafka), so they need a stack with `fault_links`.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from realchat.stack.faultproxy import hold, latency_toxics, partition_toxics
from realchat.stack.shape import CHAT_DATABASE_LINK, GATEWAYS_LINK, PUBLISHERS_LINK, kafka_links
from realchat.stack.supervisor import Stack

Inject = Callable[[Stack], Awaitable[None]]


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    run: Inject


def _kill_and_restart(*names: str, down_s: float) -> Inject:
    """SIGKILL `names`, then restart them all at once (as an orchestrator would: one after the
    other, the chat service waited for a Kafka node's slow start and sends for both)."""

    async def run(stack: Stack) -> None:
        for name in names:
            await stack.kill_component(name, signal.SIGKILL)
        await asyncio.sleep(down_s)
        await asyncio.gather(*(stack.start_component(name) for name in names))

    return run


PROCESS_FAULTS: dict[str, Fault] = {
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


#: The faulted links: (fault name prefix, link name prefix in the proxy, who talks to whom).
LINKS = (
    ("postgres-link", CHAT_DATABASE_LINK, "the chat service and PostgreSQL"),
    ("gateways-kafka-link", kafka_links(GATEWAYS_LINK), "the gateways and Kafka"),
    ("publishers-kafka-link", kafka_links(PUBLISHERS_LINK), "the outbox publishers and Kafka"),
)

#: One-way delay of the latency fault; the lossy fault stalls each chunk 0 to 2x this.
LATENCY_MS = 200
LOSSY_MS = 100


def _on_link(prefix: str, toxics: list[dict[str, object]], seconds: float, cut: bool) -> Inject:
    async def run(stack: Stack) -> None:
        proxy = stack.fault_proxy()
        if proxy is None:
            raise RuntimeError("link faults need a stack with fault_links (its fault proxy)")
        await hold(proxy, proxy.link_names(prefix), toxics, seconds, cut_connections=cut)

    return run


def link_faults(hold_s: float, partition_s: float) -> dict[str, Fault]:
    """Latency, emulated loss and a partition on each link, for `hold_s` / `partition_s`."""
    faults = []
    for name, link, between in LINKS:
        faults += [
            Fault(
                f"{name}-latency",
                f"{LATENCY_MS} ms each way between {between} for {hold_s:g} s",
                _on_link(link, latency_toxics(LATENCY_MS), hold_s, cut=False),
            ),
            Fault(
                f"{name}-lossy",
                f"every chunk between {between} stalled 0-{2 * LOSSY_MS} ms at random, in "
                f"order (TCP's view of packet loss) for {hold_s:g} s",
                _on_link(link, latency_toxics(LOSSY_MS, jitter_ms=LOSSY_MS), hold_s, cut=False),
            ),
            Fault(
                f"{name}-partition",
                f"{between} partitioned for {partition_s:g} s (the connections it crossed are "
                "cut when it heals)",
                _on_link(link, partition_toxics(), partition_s, cut=True),
            ),
        ]
    return {f.name: f for f in faults}


def bus_outage(down_s: float) -> Fault:
    """Two of three Kafka nodes down: no quorum, no in-sync majority; the bus is gone while
    writes (stored with their outbox rows), history and syncs go on."""
    return Fault(
        "kafka-majority",
        f"SIGKILL two of three Kafka nodes for {down_s:g} s (no quorum), then restart them",
        _kill_and_restart("kafka-2", "kafka-3", down_s=down_s),
    )


def single_broker_outage(down_s: float) -> Fault:
    """The only Kafka node down (a one-node stack: `realchat chaos --kafka-nodes 1`)."""
    return Fault(
        "kafka-single",
        f"SIGKILL the only Kafka node for {down_s:g} s under traffic, then restart it",
        _kill_and_restart("kafka", down_s=down_s),
    )


#: `make chaos-single-broker`: the faults of a stack with one Kafka node.
SINGLE_BROKER_FAULTS = {f.name: f for f in (single_broker_outage(60),)}
SHORT_SINGLE_BROKER_FAULTS = {f.name: f for f in (single_broker_outage(10),)}


def schedule(bus_down_s: float, hold_s: float, partition_s: float) -> dict[str, Fault]:
    """Every fault once, in this order, with these durations."""
    outage = bus_outage(bus_down_s)
    return {**PROCESS_FAULTS, outage.name: outage, **link_faults(hold_s, partition_s)}


#: `make chaos`: the bus away for a minute, links faulted for 20-30 s.
FAULTS = schedule(bus_down_s=60, hold_s=20, partition_s=30)
#: `realchat chaos --short` and CI: the same faults, held a few seconds.
SHORT_FAULTS = schedule(bus_down_s=10, hold_s=4, partition_s=6)


def random_schedule(faults: list[Fault], rounds: int, seed: int) -> list[Fault]:
    """Each fault `rounds` times, in an order drawn from `seed` (the same seed, the same run),
    never the same fault twice in a row when there is another to put between."""
    draw = random.Random(seed)
    pending = [f for f in faults for _ in range(rounds)]
    draw.shuffle(pending)
    ordered: list[Fault] = []
    while pending:
        pick = next(
            (i for i, f in enumerate(pending) if not ordered or f.name != ordered[-1].name), 0
        )
        ordered.append(pending.pop(pick))
    return ordered
