"""A connection's socket as its frame sink: ready frames go to the transport, and writability is
the transport's flow control as aiohttp's protocol tracks it (uvloop pauses the protocol above
the transport's high-water mark, 64 KiB, and resumes it below the low one)."""

from __future__ import annotations

import asyncio

from aiohttp.base_protocol import BaseProtocol


class SocketSink:
    """Frames written straight to the transport; closing it sends no WebSocket close frame
    (`websocket.WebSocketSink` does)."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, transport: asyncio.Transport, protocol: BaseProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def writable(self) -> bool:
        return not self._protocol.writing_paused and not self._transport.is_closing()

    async def drained(self) -> None:
        if self._transport.is_closing():
            raise ConnectionResetError("the connection is closing")
        # aiohttp's own wait for the transport's resume_writing (one waiter per socket).
        await self._protocol._drain_helper()

    async def close(self, code: int, reason: str) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def buffered(self) -> int:
        """Bytes the transport holds, not yet taken by the kernel."""
        return self._transport.get_write_buffer_size()
