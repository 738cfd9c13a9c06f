"""The fan-out scenarios of `realchat bench dispatch` over real loopback TCP sockets.

The in-process scenarios hand frames to a sink that drops them; these write them to sockets,
so a delivery's cost includes what the gateway does per socket (writes, syscalls, flow
control). Each subscriber is a TCP connection on 127.0.0.1 whose far end another process
drains (`bench_readers.py`); the figure is the CPU time of the event loop's thread only, from
the first event to the last byte handed to the kernel. Events go in batches of `batch`, as the
consumer hands them over: 500 (a backlog: a client's frames of a batch leave in one write) or
1 with a loop iteration between events (a live rate where every event is one write per
client, what 10 msg/s to 1,000 subscribers is).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import uuid
from collections.abc import Sequence

from aiohttp.base_protocol import BaseProtocol

from realchat.gateway.connection import Connection
from realchat.gateway.delivery import EventDispatcher
from realchat.gateway.hub import Hub
from realchat.gateway.socket_sink import SocketSink


class _Readers:
    """The process holding the clients' ends (`bench_readers.py`)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def connect(
        cls, count: int
    ) -> tuple[_Readers, list[tuple[asyncio.Transport, BaseProtocol]]]:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0), backlog=count)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "realchat.loadtest.bench_readers", str(port), str(count),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        servers = []
        for _ in range(count):
            accepted, _ = await loop.sock_accept(listener)
            transport, protocol = await loop.connect_accepted_socket(
                lambda: BaseProtocol(loop), accepted
            )
            servers.append((transport, protocol))
        listener.close()
        assert process.stdout is not None
        await process.stdout.readline()  # "ready"
        return cls(process), servers

    async def received(self) -> int:
        """Bytes read, once every connection is closed."""
        assert self._process.stdout is not None
        line = await self._process.stdout.readline()
        await self._process.wait()
        return int(line or 0)


async def _written(connections: Sequence[Connection], sinks: Sequence[SocketSink]) -> None:
    """Until every frame is handed to the kernel (polled: the end of a benchmark, not a path)."""
    waiting = list(zip(connections, sinks, strict=True))
    while waiting:
        waiting = [(c, s) for c, s in waiting if c.pending_frames or s.buffered()]
        await asyncio.sleep(0.001)


async def fan_out_over_sockets(
    records: Sequence[object], subscribers: Sequence[uuid.UUID], batch: int = 500
) -> tuple[float, float, int]:
    """Dispatch `records` (all to `subscribers`) to connections on real sockets, `batch` at a
    time with a loop iteration between batches; return the loop thread's CPU seconds, the wall
    seconds and the bytes the clients received."""
    readers, servers = await _Readers.connect(len(subscribers))
    hub = Hub(64)
    sinks, connections = [], []
    for user, (transport, protocol) in zip(subscribers, servers, strict=True):
        sink = SocketSink(transport, protocol)
        connection = Connection(
            user, sink, queue_size=1_000_000, queue_bytes=1 << 40, close_grace_s=1,
            on_gap=lambda c, x: None, flusher=hub.flusher,
        )  # fmt: skip
        hub.register(connection)
        sinks.append(sink)
        connections.append(connection)
    dispatcher = EventDispatcher(hub)
    cpu, wall = time.thread_time(), time.perf_counter()
    for start in range(0, len(records), batch):
        await dispatcher(records[start : start + batch])  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the round that writes this batch's frames
    await _written(connections, sinks)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    for connection in connections:
        await connection.finish()
    for transport, _ in servers:
        transport.close()
    return cpu, wall, await readers.received()
