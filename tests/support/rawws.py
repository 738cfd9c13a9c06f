"""A WebSocket client on a plain socket, for tests that play badly behaved clients.

Nothing is read from the socket unless the test asks (aiohttp's client reads ahead into its own
buffers), and the kernel receive buffer can be made small, so a client that stops reading really
stops the bytes: the server's send path fills up within a few hundred KiB.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.payload)
        return value


class RawWebSocket:
    """One client connection. `recv()` returns None once the server closed the TCP connection
    (EOF) and raises ConnectionResetError if it was reset."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self._buffer = bytearray(buffered)
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def connect(
        cls, url: str, *, rcvbuf: int | None = None, mss: int | None = None
    ) -> RawWebSocket:
        """Open `ws://host:port/path?query` (an `http://` URL works too). `rcvbuf` sets
        SO_RCVBUF before connecting, which also caps the TCP window the client advertises; `mss`
        announces a small segment size, which keeps the server's send buffer small too (Linux
        sizes it from the segment size, ~64 KiB on loopback)."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if mss is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_connect(sock, (host, port))
            key = base64.b64encode(os.urandom(16)).decode()
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            request = (
                f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await loop.sock_sendall(sock, request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await loop.sock_recv(sock, 4096)
                if not chunk:
                    raise ConnectionError(f"no handshake reply: {head!r}")
                head += chunk
        except BaseException:
            sock.close()
            raise
        status, _, rest = head.partition(b"\r\n\r\n")
        if b" 101 " not in status.split(b"\r\n", 1)[0]:
            sock.close()
            raise ConnectionError(f"handshake refused: {status!r}")
        return cls(sock, rest)

    # -- sending ---------------------------------------------------------------------------------

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        """One final frame, masked as every client frame must be."""
        head = bytearray([0x80 | opcode])
        length = len(payload)
        if length < 126:
            head.append(0x80 | length)
        elif length < 1 << 16:
            head.append(0x80 | 126)
            head += struct.pack("!H", length)
        else:
            head.append(0x80 | 127)
            head += struct.pack("!Q", length)
        mask = os.urandom(4)
        head += mask
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await self._loop.sock_sendall(self.sock, bytes(head) + masked)

    async def send_json(self, frame: dict[str, Any]) -> None:
        await self.send_frame(OP_TEXT, json.dumps(frame).encode())

    # -- receiving -------------------------------------------------------------------------------

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            chunk = await self._loop.sock_recv(self.sock, 65536)
            if not chunk:
                return False
            self._buffer += chunk
        return True

    async def recv(self) -> Frame | None:
        """The next frame (pings are answered and skipped); None at EOF."""
        while True:
            if not await self._fill(2):
                return None
            opcode, length = self._buffer[0] & 0x0F, self._buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if not await self._fill(4):
                    return None
                length = struct.unpack("!H", self._buffer[2:4])[0]
                offset = 4
            elif length == 127:
                if not await self._fill(10):
                    return None
                length = struct.unpack("!Q", self._buffer[2:10])[0]
                offset = 10
            if not await self._fill(offset + length):
                return None
            payload = bytes(self._buffer[offset : offset + length])
            del self._buffer[: offset + length]
            if opcode == OP_PING:
                await self.send_frame(OP_PONG, payload)
                continue
            return Frame(opcode, payload)

    async def drain(self, timeout_s: float) -> tuple[list[Frame], str]:
        """Read until the connection ends; return the frames and how it ended: `close <code>`
        (a close frame), `eof` or `reset`. Raises TimeoutError if it is still open then."""
        frames: list[Frame] = []

        async def loop() -> str:
            try:
                while (frame := await self.recv()) is not None:
                    frames.append(frame)
                    if frame.opcode == OP_CLOSE:
                        return f"close {frame.close_code}"
            except ConnectionResetError:
                return "reset"
            return "eof"

        ended = await asyncio.wait_for(loop(), timeout_s)
        return frames, ended

    def close(self) -> None:
        self.sock.close()
