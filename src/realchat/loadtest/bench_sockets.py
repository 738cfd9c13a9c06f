"""The fan-out scenario of `realchat bench dispatch` over real loopback TCP sockets.

The in-process scenarios hand frames to a sink that drops them; this one writes them to
sockets, so a delivery's cost includes what the gateway does per socket (writes, syscalls,
flow control). Each subscriber is a TCP connection on 127.0.0.1 whose far end a reader thread
drains; the figure is the CPU time of the event loop's thread only (the reader is the client's
cost), from the first event to the last byte handed to the kernel.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Sequence

from aiohttp.base_protocol import BaseProtocol

from realchat.gateway.connection import Connection
from realchat.gateway.delivery import EventDispatcher
from realchat.gateway.hub import Hub
from realchat.gateway.socket_sink import SocketSink


class _Readers:
    """The clients' ends, drained by one thread (kept off the measured thread)."""

    def __init__(self, sockets: Sequence[socket.socket]) -> None:
        self._selector = selectors.DefaultSelector()
        for sock in sockets:
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self.received = 0
        self._thread = threading.Thread(target=self._run, name="bench-readers", daemon=True)

    def __enter__(self) -> _Readers:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._selector.close()

    def _run(self) -> None:
        buffer = bytearray(256 * 1024)
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.05):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    self.received += sock.recv_into(buffer)
                except BlockingIOError:
                    continue


async def _open(
    count: int,
) -> tuple[list[tuple[asyncio.Transport, BaseProtocol]], list[socket.socket]]:
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0), backlog=count)
    port = listener.getsockname()[1]
    servers, clients = [], []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        transport, protocol = await loop.connect_accepted_socket(
            lambda: BaseProtocol(loop), accepted
        )
        servers.append((transport, protocol))
        clients.append(client)
    listener.close()
    return servers, clients


async def _written(connections: Sequence[Connection], sinks: Sequence[SocketSink]) -> None:
    """Until every frame is handed to the kernel (polled: the end of a benchmark, not a path)."""
    waiting = list(zip(connections, sinks, strict=True))
    while waiting:
        waiting = [(c, s) for c, s in waiting if c.pending_frames or s.buffered()]
        await asyncio.sleep(0.001)


async def fan_out_over_sockets(
    records: Sequence[object], subscribers: Sequence[uuid.UUID]
) -> tuple[float, float, int]:
    """Dispatch `records` (all to `subscribers`) to connections on real sockets; return the loop
    thread's CPU seconds, the wall seconds and the bytes the clients received."""
    servers, clients = await _open(len(subscribers))
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
    with _Readers(clients) as readers:
        cpu, wall = time.thread_time(), time.perf_counter()
        for start in range(0, len(records), 500):  # the consumer hands over batches of 500
            await dispatcher(records[start : start + 500])  # type: ignore[arg-type]
        await _written(connections, sinks)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        received = readers.received
    for connection in connections:
        await connection.finish()
    for transport, _ in servers:
        transport.close()
    for client in clients:
        client.close()
    return cpu, wall, received
