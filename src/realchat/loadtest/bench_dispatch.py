"""What broadcast consumption costs a gateway (decision 11): every instance reads every event.

Measures, in-process and without a broker, the gateway's per-event work on the consumer path:
decoding a `chat.message.created.v1` record and dispatching it through the hub, (a) when none of
its recipients is connected to this instance (the cost every *other* instance pays for it) and
(b) when its recipients are (encode once, queue to each connection) and (c) when one conversation
has many local subscribers (fan-out: the per-delivery cost of the edge's fast path). From (a),
the number of instances that can share a message rate before the filtering alone fills a core;
(d) is (c) written to real loopback sockets (`bench_sockets.py`), CPU time of the loop's thread;
(e) is (d) with one event per loop iteration (every delivery a write of its own).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import uvloop

from realchat.gateway.connection import Connection
from realchat.gateway.delivery import EventDispatcher
from realchat.gateway.hub import Hub
from realchat.loadtest.bench_sockets import fan_out_over_sockets


class _Record:
    """The slice of a confluent_kafka.Message the dispatcher reads."""

    def __init__(self, value: bytes) -> None:
        self._value = value

    def topic(self) -> str:
        return "chat.message.created.v1"

    def headers(self) -> list[tuple[str, bytes]]:
        return [("event-type", b"chat.message.created.v1")]

    def value(self) -> bytes:
        return self._value


class _NullSink:
    """A socket that takes everything at once: what is left is the gateway's own work."""

    def write(self, data: bytes) -> None:
        return None

    def writable(self) -> bool:
        return True

    async def drained(self) -> None:
        return None

    async def close(self, code: int, reason: str) -> None:
        return None

    def abort(self) -> None:
        return None


@dataclass(frozen=True)
class DispatchResult:
    scenario: str
    events: int
    local_deliveries: int
    #: Wall time (events_per_s comes from it: it varies with the machine's load).
    seconds: float
    events_per_s: float
    #: CPU time of the event loop's thread per event (steadier than wall time on a busy machine).
    us_per_event: float
    #: CPU per delivery to one connection: the figure the edge is judged by at fan-out.
    us_per_delivery: float | None


def _payload(conversation: uuid.UUID, seq: int, recipients: list[uuid.UUID]) -> bytes:
    return msgspec.json.encode(
        {
            "event_id": str(uuid.uuid4()),
            "conversation_id": str(conversation),
            "seq": seq,
            "message_id": str(uuid.uuid4()),
            "sender_id": str(recipients[0]),
            "content": "x" * 120,
            "created_at": datetime.now(UTC).isoformat(),
            "recipients": [str(r) for r in recipients],
        }
    )


async def _run(scenario: str, hub: Hub, records: list[_Record], local: int) -> DispatchResult:
    dispatcher = EventDispatcher(hub)
    started, cpu = time.perf_counter(), time.thread_time()
    for start in range(0, len(records), 500):  # the consumer hands over batches of 500
        await dispatcher(records[start : start + 500])  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the round that writes what the last batch left waiting
    seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
    return DispatchResult(
        scenario=scenario,
        events=len(records),
        local_deliveries=local,
        seconds=round(seconds, 3),
        events_per_s=round(len(records) / seconds),
        us_per_event=round(cpu / len(records) * 1e6, 2),
        us_per_delivery=round(cpu / local * 1e6, 2) if local else None,
    )


def _connect(hub: Hub, users: list[uuid.UUID]) -> list[Connection]:
    conns = []
    for user in users:
        conn = Connection(
            user, _NullSink(), queue_size=1_000_000, close_grace_s=1, on_gap=lambda c, x: None
        )
        hub.register(conn)
        conns.append(conn)
    return conns


async def bench_dispatch(events: int, connections: int, fanout: int) -> list[DispatchResult]:
    users = [uuid.uuid4() for _ in range(connections)]
    # (a) nobody here: every event is decoded and filtered out.
    remote = [
        _Record(_payload(uuid.uuid4(), 1, [uuid.uuid4(), uuid.uuid4()])) for _ in range(events)
    ]
    results = [await _run("no local recipient", Hub(64), remote, 0)]
    # (b) both recipients of every event are connected here.
    hub = Hub(64)
    conns = _connect(hub, users)
    local = []
    for n in range(events):
        pair = [users[(2 * n) % connections], users[(2 * n + 1) % connections]]
        local.append(_Record(_payload(uuid.uuid4(), 1, pair)))
    results.append(await _run("2 local recipients", hub, local, 2 * events))
    # (c) one conversation, `fanout` subscribers here, seqs in order: every event reaches all.
    subscribers = users[:fanout]
    conversation = uuid.uuid4()
    fanned = [
        _Record(_payload(conversation, seq, subscribers))
        for seq in range(1, max(1, events // fanout * 2) + 1)
    ]
    name = f"{len(subscribers)} subscribers"
    results.append(await _run(name, hub, fanned, len(fanned) * len(subscribers)))
    for conn in conns:
        await conn.finish()
    # (d) the same over loopback TCP sockets: CPU of the loop's thread per delivery; (e) one
    # event per loop iteration, so every delivery is a write of its own (a live rate).
    for name, batch in ((f"{len(subscribers)} on sockets", 500), ("one event a round", 1)):
        cpu, wall, _ = await fan_out_over_sockets(fanned, subscribers, batch)
        results.append(_on_sockets(name, len(fanned), len(subscribers), cpu, wall))
    return results


def _on_sockets(
    name: str, events: int, subscribers: int, cpu: float, wall: float
) -> DispatchResult:
    deliveries = events * subscribers
    return DispatchResult(
        scenario=name,
        events=events,
        local_deliveries=deliveries,
        seconds=round(wall, 3),
        events_per_s=round(events / wall),
        us_per_event=round(cpu / events * 1e6, 2),
        us_per_delivery=round(cpu / deliveries * 1e6, 2),
    )


def bench_dispatch_command(events: int, connections: int, output: Path, fanout: int = 1000) -> int:
    # uvloop, as the gateway runs.
    results = uvloop.run(bench_dispatch(events, connections, min(fanout, connections)))
    print(f"{'scenario':<22} {'events':>8} {'events/s':>10} {'us/event':>9} {'us/delivery':>12}")
    for r in results:
        per_delivery = "-" if r.us_per_delivery is None else f"{r.us_per_delivery}"
        print(
            f"{r.scenario:<22} {r.events:>8} {r.events_per_s:>10} {r.us_per_event:>9}"
            f" {per_delivery:>12}"
        )
    filter_rate = round(1e6 / results[0].us_per_event)  # CPU time: steady on a busy machine
    print(
        f"one core filters {filter_rate} foreign events/s: at 3,000 msg/s the broadcast costs "
        f"each instance {3000 / filter_rate:.1%} of a core"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "gateway-dispatch",
        "at": datetime.now(UTC).isoformat(),
        "cores": os.cpu_count(),
        "connections": connections,
        "fanout": fanout,
        "load_average": os.getloadavg(),
        "results": [asdict(r) for r in results],
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {output}")
    return 0
