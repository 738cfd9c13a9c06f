"""The gateway's WebSocket protocol object without a socket: messages handled one at a time in
order, reading paused while too many wait, control frames answered at once, and the session told
when the socket is gone only after the messages that came before are handled."""

from __future__ import annotations

import asyncio
import struct
import uuid
from typing import Any, cast

import pytest

from realchat.gateway.connection import Connection
from realchat.gateway.wsreader import FrameError, Opcode, Received
from realchat.gateway.wssocket import INBOX_MESSAGES, WebSocket
from tests.unit.gateway.fakes import FakeSink
from tests.unit.gateway.test_wsreader import client_frame

pytestmark = pytest.mark.asyncio(loop_scope="session")


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no socket: aiohttp's TCP_NODELAY is skipped


class SlowSession:
    """Handles a message only when let through; records what it handled and when it was told
    the socket was gone."""

    def __init__(self, expect: int = 0) -> None:
        self.handled: list[bytes] = []
        self.gate = asyncio.Event()
        self.lost_after: int | None = None
        self.lost = asyncio.Event()
        self._expect = expect
        self.all_handled = asyncio.Event()

    async def on_message(self, socket: WebSocket, received: Received) -> None:
        await self.gate.wait()
        self.handled.append(received.payload)
        if len(self.handled) == self._expect:
            self.all_handled.set()

    def on_violation(self, socket: WebSocket, violation: FrameError) -> None:
        raise AssertionError(violation.reason)

    def on_lost(self, socket: WebSocket) -> None:
        self.lost_after = len(self.handled)
        self.lost.set()


def opened(session: SlowSession) -> tuple[WebSocket, FakeTransport]:
    socket = WebSocket(asyncio.get_running_loop(), session, max_message_bytes=1024)
    transport = FakeTransport()
    socket.connection_made(cast(asyncio.Transport, transport))
    socket.attach(Connection(uuid.uuid4(), FakeSink(), queue_size=8, close_grace_s=1, on_gap=print))
    return socket, transport


async def test_messages_are_handled_in_order_and_a_flood_stops_the_reading() -> None:
    payloads = [str(n).encode() for n in range(INBOX_MESSAGES + 50)]
    session = SlowSession(expect=len(payloads))
    socket, transport = opened(session)
    socket.data_received(b"".join(client_frame(Opcode.TEXT, p) for p in payloads))
    assert not transport.reading  # too many wait: TCP pushes back on the client

    session.gate.set()
    await asyncio.wait_for(session.all_handled.wait(), 5)
    assert session.handled == payloads
    assert transport.reading


async def test_pings_are_answered_at_once_even_while_messages_wait() -> None:
    session = SlowSession()
    socket, transport = opened(session)
    socket.data_received(client_frame(Opcode.TEXT, b"slow") + client_frame(Opcode.PING, b"hi"))
    assert bytes(transport.written) == b"\x8a\x02hi"
    assert session.handled == []
    session.gate.set()


async def test_the_session_ends_after_the_messages_that_came_before_the_close() -> None:
    session = SlowSession()
    socket, transport = opened(session)
    socket.data_received(
        client_frame(Opcode.TEXT, b"one")
        + client_frame(Opcode.TEXT, b"two")
        + client_frame(Opcode.CLOSE, struct.pack("!H", 1000))
    )
    assert transport.written == b"\x88\x02" + struct.pack("!H", 1000)  # the close answered
    assert transport.closed
    socket.connection_lost(None)
    assert session.lost_after is None  # two messages still to handle
    session.gate.set()
    await asyncio.wait_for(session.lost.wait(), 5)
    assert session.lost_after == 2
    assert socket.peer_close_code == 1000
