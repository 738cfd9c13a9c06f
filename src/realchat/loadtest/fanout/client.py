"""A bench client worker process: holds its share of the connections, on uvloop, and counts and
times every delivery. The same code for both servers; only the `Session` differs.

JSON lines with the coordinator (`run.py`): the first stdin line is the configuration (server
kind, channel, connection list); then commands `open` (the next `count` connections, each
through its handshake), `count` (deliveries of a tag so far), `report` (count and the latency
histogram of a tag) and `close`. Connections are spread over the given loopback source
addresses: one address has ~28k ephemeral ports towards one destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import uvloop
from hdrh.histogram import HdrHistogram

from realchat.filelimit import raise_file_limit
from realchat.loadtest.fanout.payload import Stamp
from realchat.loadtest.fanout.session import Session, SessionError
from realchat.loadtest.fanout.session_centrifugo import CentrifugoSession
from realchat.loadtest.fanout.session_realchat import RealChatSession
from realchat.loadtest.histograms import new_histogram, record_us
from realchat.loadtest.pipe import emit, read_commands

#: How long one connection may take from TCP connect to subscribed.
HANDSHAKE_TIMEOUT_S = 60.0
#: A handshake the server refused (e.g. RealChat's `chat_unavailable` for a sync while the chat
#: service is busy, which the protocol says to retry) is tried again this many times.
HANDSHAKE_RETRIES = 3
HANDSHAKE_BACKOFF_S = 1.0


class Spec(msgspec.Struct, array_like=True, frozen=True):
    """One connection to open: where, with which token, from which source address."""

    url: str
    token: str
    source_ip: str


class ClientConfig(msgspec.Struct, frozen=True):
    #: "realchat" or "centrifugo".
    kind: str
    channel: str
    connections: list[Spec]
    connect_concurrency: int = 200


def new_session(kind: str, token: str, channel: str) -> Session:
    if kind == "realchat":
        return RealChatSession()
    if kind == "centrifugo":
        return CentrifugoSession(token, channel)
    raise ValueError(f"unknown server kind {kind!r}")


@dataclass
class Deliveries:
    """Per tag: how many payloads arrived and their latencies (microseconds)."""

    counts: dict[str, int] = field(default_factory=dict)
    latency: dict[str, HdrHistogram] = field(default_factory=dict)

    def record(self, stamps: list[Stamp], now_ns: int) -> None:
        for stamp in stamps:
            hist = self.latency.get(stamp.tag)
            if hist is None:
                hist = self.latency[stamp.tag] = new_histogram()
            self.counts[stamp.tag] = self.counts.get(stamp.tag, 0) + 1
            record_us(hist, (now_ns - stamp.published_ns) // 1000)

    def encoded(self, tag: str) -> str:
        hist = self.latency.get(tag)
        return hist.encode().decode() if hist is not None else ""


class ClientWorker:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.deliveries = Deliveries()
        self.next_index = 0
        self.open = 0
        self.failed = 0
        self.dropped = 0
        self.first_error: str | None = None
        self.sessions: dict[str, aiohttp.ClientSession] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def _http(self, source_ip: str) -> aiohttp.ClientSession:
        if (http := self.sessions.get(source_ip)) is None:
            connector = aiohttp.TCPConnector(limit=0, local_addr=(source_ip, 0))
            http = self.sessions[source_ip] = aiohttp.ClientSession(connector=connector)
        return http

    def _error(self, error: str) -> None:
        if self.first_error is None:
            self.first_error = error

    async def open_next(self, count: int) -> dict[str, Any]:
        specs = self.config.connections[self.next_index : self.next_index + count]
        self.next_index += len(specs)
        gate = asyncio.Semaphore(self.config.connect_concurrency)

        async def one(spec: Spec) -> None:
            async with gate:
                ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                task = asyncio.create_task(self._connection(spec, ready))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(ready), HANDSHAKE_TIMEOUT_S)

        await asyncio.gather(*(one(spec) for spec in specs))
        return {"type": "opened", **self.status()}

    def status(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "failed": self.failed,
            "dropped": self.dropped,
            "first_error": self.first_error,
        }

    async def _connection(self, spec: Spec, ready: asyncio.Future[None]) -> None:
        for attempt in range(HANDSHAKE_RETRIES + 1):
            if await self._session(spec, ready, last=attempt == HANDSHAKE_RETRIES):
                return
            await asyncio.sleep(HANDSHAKE_BACKOFF_S * (attempt + 1))

    async def _session(self, spec: Spec, ready: asyncio.Future[None], *, last: bool) -> bool:
        """One connection attempt; False when it ended before subscribing (worth retrying)."""
        session = new_session(self.config.kind, spec.token, self.config.channel)
        subscribed = False
        try:
            async with self._http(spec.source_ip).ws_connect(
                spec.url, autoping=True, compress=0, max_msg_size=0
            ) as ws:
                for frame in session.start():
                    await ws.send_str(frame)
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        continue
                    outcome = session.receive(message.data)
                    for reply in outcome.replies:
                        await ws.send_str(reply)
                    if outcome.stamps:
                        self.deliveries.record(outcome.stamps, time.monotonic_ns())
                    if outcome.ready and not subscribed:
                        subscribed = True
                        self.open += 1
                        ready.set_result(None)
                self._error(f"closed by the server: {ws.close_code}")
        except (SessionError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._error(f"{type(exc).__name__}: {exc}")
        finally:
            if subscribed:
                self.open -= 1
                self.dropped += 1
            elif last:
                self.failed += 1
                if not ready.done():
                    ready.set_exception(ConnectionError("handshake did not complete"))
                    ready.exception()  # retrieved: a timed-out waiter must not warn about it
        return subscribed

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for http in self.sessions.values():
            await http.close()


async def main() -> None:
    raise_file_limit()
    commands = await read_commands()
    config = msgspec.json.decode(await commands.readline(), type=ClientConfig)
    worker = ClientWorker(config)
    try:
        while line := await commands.readline():
            command = msgspec.json.decode(line)
            match command["cmd"]:
                case "open":
                    emit(await worker.open_next(int(command["count"])))
                case "count":
                    tag = command["tag"]
                    emit({"type": "count", "received": worker.deliveries.counts.get(tag, 0)})
                case "report":
                    tag = command["tag"]
                    emit(
                        {
                            "type": "report",
                            "received": worker.deliveries.counts.get(tag, 0),
                            "hist": worker.deliveries.encoded(tag),
                            **worker.status(),
                        }
                    )
                case "close":
                    break
    finally:
        # Closing counts as drops: record the status first, then let the sockets go.
        await worker.close()
    emit({"type": "closed"})


if __name__ == "__main__":
    uvloop.run(main())
