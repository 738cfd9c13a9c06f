"""An idle-connection client worker process: WebSockets that connect, wait for `hello` and then
only answer pings, each a bare `asyncio.Protocol` (a few KiB and no task per connection), so one
process holds ~15,000 of them and opens hundreds per second on a busy machine.

It speaks the fan-out bench's worker protocol (`fanout/client.py`, driven by `ClientPool`): the
first stdin line is a `ClientConfig` (its connection list), then `open` (the next `count`
connections; the answer comes once each is open or failed) and `close`. An idle client sends
no `sync`: it holds what a connected, quiet client costs the gateway, nothing it asked for.
"""

from __future__ import annotations

import asyncio
import os
import struct
from dataclasses import dataclass
from typing import Any

import msgspec
import uvloop
from yarl import URL

from realchat.filelimit import raise_file_limit
from realchat.loadtest.fanout.client import ClientConfig, Spec
from realchat.loadtest.pipe import emit, read_commands

#: How long one connection may take from TCP connect to `hello`.
HANDSHAKE_TIMEOUT_S = 120.0
_PING, _CLOSE = 0x9, 0x8


def masked_pong(payload: bytes) -> bytes:
    """A client's pong (client frames are masked; a zero mask keeps the payload as it is)."""
    return struct.pack("!BB", 0x80 | 0xA, 0x80 | len(payload)) + b"\x00\x00\x00\x00" + payload


def server_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the whole frames at the start of `buffer`, removed from it."""
    frames = []
    while len(buffer) >= 2:
        size, start = buffer[1] & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                break
            size, start = struct.unpack_from("!H", buffer, 2)[0], 4
        elif size == 127:
            if len(buffer) < 10:
                break
            size, start = struct.unpack_from("!Q", buffer, 2)[0], 10
        if len(buffer) < start + size:
            break
        frames.append((buffer[0] & 0x0F, bytes(buffer[start : start + size])))
        del buffer[: start + size]
    return frames


class IdleConnection(asyncio.Protocol):
    """Upgrade, `hello`, then pongs; `ready` resolves with True at `hello`, False if the
    connection ends first."""

    __slots__ = ("_buffer", "_request", "_upgraded", "closed_by_server", "ready", "transport")

    def __init__(self, request: bytes, ready: asyncio.Future[bool]) -> None:
        self._request = request
        self._buffer = bytearray()
        self._upgraded = False
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.closed_by_server: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self._buffer.startswith(b"HTTP/1.1 101"):
                self._end()
                return
            self._upgraded = True
            del self._buffer[: end + 4]
        for opcode, payload in server_frames(self._buffer):
            if opcode == _PING and self.transport is not None:
                self.transport.write(masked_pong(payload))
            elif opcode == _CLOSE:
                self.closed_by_server = struct.unpack("!H", payload[:2])[0] if payload else 1005
                self._end()
            elif not self.ready.done() and b'"hello"' in payload:
                self.ready.set_result(True)

    def _end(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.ready.done():
            self.ready.set_result(False)


def upgrade_request(url: URL) -> bytes:
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # any 16 bytes in base64 will do for a load client
    return (
        f"GET {url.raw_path_qs} HTTP/1.1\r\nHost: {url.raw_authority}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


@dataclass
class IdleWorker:
    config: ClientConfig
    next_index: int = 0
    failed: int = 0
    first_error: str | None = None

    def __post_init__(self) -> None:
        self.connections: list[IdleConnection] = []

    @property
    def open(self) -> int:
        return sum(1 for c in self.connections if c.transport is not None)

    async def _one(self, spec: Spec, gate: asyncio.Semaphore) -> None:
        url = URL(spec.url)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[bool] = loop.create_future()
        async with gate:
            try:
                _, connection = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: IdleConnection(upgrade_request(url), ready),
                        url.host or "127.0.0.1",
                        url.port or 80,
                        local_addr=(spec.source_ip, 0),
                    ),
                    HANDSHAKE_TIMEOUT_S,
                )
                ok = await asyncio.wait_for(asyncio.shield(ready), HANDSHAKE_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                ok, connection = False, None
                self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
        if ok and connection is not None:
            self.connections.append(connection)
        else:
            self.failed += 1
            if connection is not None and connection.closed_by_server is not None:
                self.first_error = self.first_error or (
                    f"closed by the server: {connection.closed_by_server}"
                )

    async def open_next(self, count: int) -> dict[str, Any]:
        specs = self.config.connections[self.next_index : self.next_index + count]
        self.next_index += len(specs)
        gate = asyncio.Semaphore(self.config.connect_concurrency)
        await asyncio.gather(*(self._one(spec, gate) for spec in specs))
        return {"type": "opened", **self.status()}

    def status(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "failed": self.failed,
            "dropped": len(self.connections) - self.open,
            "first_error": self.first_error,
        }


async def main() -> None:
    raise_file_limit()
    commands = await read_commands()
    worker = IdleWorker(msgspec.json.decode(await commands.readline(), type=ClientConfig))
    while line := await commands.readline():
        command = msgspec.json.decode(line)
        if command["cmd"] == "open":
            emit(await worker.open_next(int(command["count"])))
        elif command["cmd"] == "close":
            break
    for connection in worker.connections:
        if connection.transport is not None:
            connection.transport.abort()
    emit({"type": "closed", "pid": os.getpid()})


if __name__ == "__main__":
    uvloop.run(main())
