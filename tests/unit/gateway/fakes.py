"""In-memory stand-ins for the gateway's transport and the chat service's history."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from datetime import UTC, datetime
from typing import Any

from realchat.contract.frames import Message
from realchat.gateway.chat_client import ChatCallError
from realchat.gateway.connection import Connection
from realchat.gateway.hub import Hub


class FakeSink:
    """A client socket: parses the WebSocket frames written to it (text frames into `frames`,
    pings counted); can be told to stop reading (`reading` cleared), and then takes no more
    until it reads again: what was written stays unread and the socket is not writable."""

    def __init__(self) -> None:
        self._frames: list[dict[str, Any]] = []
        self._unread = bytearray()
        self.writes = 0
        self.closed: tuple[int, str] | None = None
        self.aborted = False
        self.reading = asyncio.Event()
        self.reading.set()
        self.take_close = True
        self.pings = 0

    @property
    def frames(self) -> list[dict[str, Any]]:
        if self.reading.is_set():
            self._consume()
        return self._frames

    def write(self, data: bytes) -> None:
        self.writes += 1
        self._unread += data
        if self.reading.is_set():
            self._consume()

    def writable(self) -> bool:
        if self.reading.is_set():
            self._consume()
        return not self._unread

    async def drained(self) -> None:
        await self.reading.wait()
        self._consume()

    def _consume(self) -> None:
        data = self._unread
        while len(data) >= 2:
            opcode, size, start = data[0] & 0x0F, data[1] & 0x7F, 2
            if size == 126:
                size, start = struct.unpack("!H", data[2:4])[0], 4
            elif size == 127:
                size, start = struct.unpack("!Q", data[2:10])[0], 10
            payload = bytes(data[start : start + size])
            del data[: start + size]
            if opcode == 0x1:
                self._frames.append(json.loads(payload))
            elif opcode == 0x9:
                self.pings += 1

    async def close(self, code: int, reason: str) -> None:
        if not self.take_close:
            await asyncio.Event().wait()  # a client that never reads its close frame
        self.closed = (code, reason)

    def abort(self) -> None:
        self.aborted = True

    def seqs(self, conversation_id: str) -> list[int]:
        return [
            f["message"]["seq"]
            for f in self.frames
            if f["type"] == "message" and f["message"]["conversation_id"] == conversation_id
        ]


def message(conversation_id: str, seq: int) -> Message:
    return Message(
        message_id=str(uuid.uuid4()),
        conversation_id=conversation_id,
        seq=seq,
        sender_id=str(uuid.uuid4()),
        content=f"m{seq}",
        created_at=datetime.now(UTC),
    )


class FakeHistory:
    """The chat service's history of one or more conversations; `gate` can hold a read."""

    def __init__(self) -> None:
        self.messages: dict[str, list[Message]] = {}
        self.gate: asyncio.Event | None = None
        self.reads = 0
        #: Reads still to fail as if the chat service were down (then: `unavailable` error).
        self.failures = 0
        self.failure = ChatCallError(503, "chat_unavailable", "the chat service is unavailable")
        #: Set once a read has taken its snapshot (and is waiting at the gate, if any).
        self.snapshot_taken = asyncio.Event()

    def append(self, conversation_id: str) -> Message:
        seq = len(self.messages.setdefault(conversation_id, [])) + 1
        m = message(conversation_id, seq)
        self.messages[conversation_id].append(m)
        return m

    async def history(
        self, user: uuid.UUID, conversation_id: str, after_seq: int, limit: int
    ) -> tuple[list[Message], int]:
        self.reads += 1
        if self.failures:
            self.failures -= 1
            raise self.failure
        snapshot = list(self.messages.get(conversation_id, []))
        self.snapshot_taken.set()
        if self.gate is not None:
            await self.gate.wait()
        page = [m for m in snapshot if m.seq > after_seq][:limit]
        return page, len(snapshot)


def connect(hub: Hub, user: uuid.UUID) -> tuple[Connection, FakeSink]:
    """A connection of `user` registered in `hub`, on a fake socket."""
    sink = FakeSink()
    conn = Connection(user, sink, queue_size=8, close_grace_s=0.1, on_gap=lambda c, x: None)
    hub.register(conn)
    return conn, sink
