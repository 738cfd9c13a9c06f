"""The run: two real WebSocket clients of a fresh 1:1 conversation on the running stack, one
sending at a low rate, the other receiving; every message's moments, then the report.

Each message is sent alone (the next one waits for its delivery or for `WAIT_S`), so every send
meets an idle stack: this is the latency of a quiet conversation, not of a loaded system.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec

from realchat.config import Settings
from realchat.contract.frames import (
    ErrorFrame,
    HelloFrame,
    MessageFrame,
    SendFrame,
    SendOkFrame,
    ServerFrame,
    SyncDoneFrame,
    SyncFrame,
)
from realchat.loadtest.bench_report import machine_facts, write_atomically
from realchat.loadtest.fanout import realchat_side
from realchat.loadtest.latency.bus import BusWatch, Seen
from realchat.loadtest.latency.trips import (
    LatencyResult,
    Trip,
    render,
    summarize_trips,
    with_moments,
)
from realchat.loadtest.population import ProvisioningError
from realchat.loadtest.stackview import StackView, stack_view
from realchat.stack.state import with_saved_shape
from realchat.stack.supervisor import Stack

Reporter = Callable[[str], None]

DEFAULT_OUTPUT = Path("reports/bench-latency.json")
#: The longest a message may take to arrive before it counts as lost and the next one goes.
WAIT_S = 5.0
HANDSHAKE_TIMEOUT_S = 15.0
SWITCH_INTERVAL_S = 0.0005

_decoder = msgspec.json.Decoder(ServerFrame)


class LatencyBenchError(RuntimeError):
    """The benchmark cannot run; the message says why."""


@dataclass(frozen=True)
class LatencyOptions:
    messages: int = 200
    #: Messages per second (each still waits for the previous one's delivery).
    rate: float = 5.0
    #: Sent first and not counted: connections, prepared statements and caches warm up.
    warmup: int = 10
    #: "haproxy" (the public entrypoint) or "direct" (the first gateway).
    entry: str = "haproxy"


def content_of(run: str, n: int) -> str:
    return f"latency bench {run} #{n}"


def number_in(run: str, content: str) -> int | None:
    """The message number in a bench message's content; None for any other content."""
    prefix = content_of(run, 0)[:-1]
    if not content.startswith(prefix):
        return None
    tail = content[len(prefix) :]
    return int(tail) if tail.isdigit() else None


class Peer:
    """One WebSocket client: synced, then every frame stamped on arrival and handed on."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: asyncio.Queue[tuple[ServerFrame, float]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Wait for `hello`, sync, wait for `sync_done`: live messages come after that."""
        self._reader = asyncio.create_task(self._read())
        await self._expect(HelloFrame)
        await self.ws.send_str(msgspec.json.encode(SyncFrame()).decode())
        await self._expect(SyncDoneFrame)

    async def _expect(self, kind: type) -> None:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            while True:
                frame, _ = await self.frames.get()
                if isinstance(frame, ErrorFrame):
                    raise LatencyBenchError(f"gateway error {frame.code}: {frame.message}")
                if isinstance(frame, kind):
                    return

    async def _read(self) -> None:
        async for message in self.ws:
            at = time.time()
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                frame = _decoder.decode(message.data)
            except msgspec.ValidationError:
                continue  # a frame type newer than this client
            self.frames.put_nowait((frame, at))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.ws.close()


async def _connect(http: aiohttp.ClientSession, entry: str, token: str) -> Peer:
    ws = await http.ws_connect(realchat_side.ws_url(entry, token), autoping=True, compress=0)
    peer = Peer(ws)
    await peer.start()
    return peer


async def _exchange(sender: Peer, receiver: Peer, conversation_id: str, run: str, n: int) -> Trip:
    """Send message `n` and wait for its `send_ok` and its delivery (at most `WAIT_S`)."""
    frame = SendFrame(conversation_id, f"{run}-{n}", content_of(run, n))
    text = msgspec.json.encode(frame).decode()
    sent = time.time()
    await sender.ws.send_str(text)
    trip = Trip(n=n, sent=sent)

    async def acked() -> float:
        while True:
            got, at = await sender.frames.get()
            if isinstance(got, SendOkFrame) and got.client_msg_id == frame.client_msg_id:
                return at
            if isinstance(got, ErrorFrame) and got.client_msg_id == frame.client_msg_id:
                raise LatencyBenchError(f"send refused: {got.code} {got.message}")

    async def delivered() -> float:
        while True:
            got, at = await receiver.frames.get()
            if isinstance(got, MessageFrame) and number_in(run, got.message.content) == n:
                return at

    results = await asyncio.gather(
        asyncio.wait_for(acked(), WAIT_S), asyncio.wait_for(delivered(), WAIT_S),
        return_exceptions=True,
    )  # fmt: skip
    for result in results:
        if isinstance(result, LatencyBenchError):
            raise result
    ack, delivery = (r if isinstance(r, float) else None for r in results)
    return with_moments(trip, acked=ack, delivered=delivery)


async def _database_moments(
    dsn: str, conversation_id: str, run: str
) -> dict[int, dict[str, float]]:
    """Per message number: the statement's start and the publish mark (the outbox row) and the
    row's own time (the message)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT m.content,
                      extract(epoch FROM m.created_at)::float8 AS row,
                      extract(epoch FROM o.created_at)::float8 AS statement,
                      extract(epoch FROM o.published_at)::float8 AS marked
                 FROM messages m
                 JOIN outbox o ON o.partition_key = m.conversation_id::text
                  AND convert_from(o.payload, 'UTF8')::jsonb ->> 'message_id' = m.id::text
                WHERE m.conversation_id = $1::uuid""",
            conversation_id,
        )
    finally:
        await conn.close()
    moments: dict[int, dict[str, float]] = {}
    for row in rows:
        n = number_in(run, row["content"])
        if n is not None:
            moments[n] = {k: row[k] for k in ("row", "statement", "marked") if row[k] is not None}
    return moments


@dataclass(frozen=True)
class LatencyReport:
    timestamp: str
    machine: dict[str, object]
    settings: dict[str, object]
    result: LatencyResult
    notes: list[str]

    def to_json(self) -> str:
        document: dict[str, Any] = {"benchmark": "bench-latency", **asdict(self)}
        document["result"]["met"] = self.result.met
        return json.dumps(document, indent=2) + "\n"


async def _entry(stack: Stack, options: LatencyOptions) -> tuple[str, str, StackView]:
    view = await stack_view(stack)
    if not view.gateway_urls or not all(name in view.pids for name in view.gateways):
        raise LatencyBenchError(
            "the stack is not running (or a gateway is down): start it with "
            "`realchat stack up --detach` (`make bench-latency` does)"
        )
    settings = stack.app_settings
    base_url = f"http://{settings.http.host}:{settings.http.port}"
    balanced = "balancer" in view.pids
    entry = base_url if options.entry == "haproxy" and balanced else view.gateway_urls[0]
    return base_url, entry, view


async def run_bench_latency(
    settings: Settings, options: LatencyOptions, report: Reporter
) -> LatencyReport:
    stack = Stack(with_saved_shape(settings))
    base_url, entry, view = await _entry(stack, options)
    run = uuid.uuid4().hex[:8]
    notes: list[str] = []
    seen: dict[int, Seen] = {}

    def on_seen(found: Seen) -> None:  # in the watch's thread: one dict store
        n = number_in(run, found.content)
        if n is not None:
            seen[n] = found

    load_before = os.getloadavg()
    async with aiohttp.ClientSession() as http:
        audience = await realchat_side.provision(http, base_url, 1, 1, view.operator)
        watch = BusWatch(stack.kafka.bootstrap_servers, on_seen)
        await asyncio.to_thread(watch.start)
        receiver = await _connect(http, entry, audience.subscriber_tokens[0])
        sender = await _connect(http, entry, audience.sender_tokens[0])
        report(
            f"1:1 conversation {audience.conversation_id} via {entry}: {options.warmup} warm-up "
            f"+ {options.messages} messages at {options.rate:g}/s"
        )
        try:
            trips = await _send_all(sender, receiver, audience.conversation_id, run, options)
            await asyncio.sleep(0.5)  # the last record's read by the watch
        finally:
            await asyncio.to_thread(watch.stop)
            await sender.close()
            await receiver.close()
    database: dict[int, dict[str, float]] = {}
    if view.dsn is not None:
        await asyncio.sleep(1.0)  # the publisher's mark of the last one
        database = await _database_moments(view.dsn, audience.conversation_id, run)
    else:
        notes.append("no database at hand: the statement, row and mark moments are missing")
    trips = [
        with_moments(
            t,
            produced=seen[t.n].produced if t.n in seen else None,
            on_bus=seen[t.n].read if t.n in seen else None,
            **database.get(t.n, {}),
        )
        for t in trips
    ]
    return LatencyReport(
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine_facts(load_before),
        settings={**asdict(options), "entrypoint": entry, "wait_s": WAIT_S},
        result=summarize_trips(trips),
        notes=notes,
    )


async def _send_all(
    sender: Peer, receiver: Peer, conversation_id: str, run: str, options: LatencyOptions
) -> list[Trip]:
    """Warm-up and measured messages on an open-loop schedule, each one alone on the path;
    the trips of the measured ones."""
    trips: list[Trip] = []
    interval = 1.0 / options.rate
    next_at = time.monotonic()
    for n in range(options.warmup + options.messages):
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at += interval
        trip = await _exchange(sender, receiver, conversation_id, run, n)
        if n >= options.warmup:
            trips.append(trip)
    return trips


def bench_latency_command(
    settings: Settings, options: LatencyOptions, output: Path, report: Reporter
) -> int:
    """`realchat bench latency`: run, print the table, save the JSON; 1 with a reason."""
    # The bus watch's thread stamps a record only once it holds the GIL: with the default 5 ms
    # switch interval, a busy event loop would show as Kafka latency.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        result = asyncio.run(run_bench_latency(settings, options, report))
    except (LatencyBenchError, ProvisioningError) as exc:
        report(f"error: {exc}")
        return 1
    write_atomically(output, result.to_json())
    report("")
    report(render(result.result))
    load = result.machine
    report(f"load average before {load['load_average_before']}, after {load['load_average_after']}")
    report(f"results written to {output}")
    return 0
