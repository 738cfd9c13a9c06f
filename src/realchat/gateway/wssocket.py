"""One upgraded WebSocket's socket, read by the gateway itself: frames in (`wsreader.py`), control
frames answered here, data messages handed to the session one at a time, in order, and the close
handshake.

An idle connection holds this object, its frame reader and the transport, nothing else: no task
and no queue until a message arrives. Messages are handled in the order they came (one client's
sends get seqs in the order it sent them): the first one starts a task that works through the
inbox and ends when it is empty. A client that sends faster than its messages are handled is
not read any more (TCP pushes back) while `INBOX_BYTES` or `INBOX_MESSAGES` wait.

Flow control of writes is aiohttp's `BaseProtocol` (the transport pauses and resumes it), which
`socket_sink.SocketSink` reads.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING, Protocol

import structlog
from aiohttp.base_protocol import BaseProtocol

from realchat.gateway.wsframe import close_frame, control_frame
from realchat.gateway.wsreader import (
    PROTOCOL_ERROR,
    FrameError,
    FrameReader,
    Opcode,
    Received,
    close_code_of,
)

if TYPE_CHECKING:
    from realchat.gateway.connection import Connection
    from realchat.gateway.ratelimit import TokenBucket

log = structlog.get_logger(__name__)

#: Bytes of received messages waiting to be handled before the socket is not read any more.
INBOX_BYTES = 64 * 1024
#: The same in messages (many tiny frames cost more than their bytes).
INBOX_MESSAGES = 256

#: RFC 6455 section 7.4.1: a normal closure (the answer to a close frame with no code).
_NORMAL = 1000


class SocketHandler(Protocol):
    """What a session does with its socket's events."""

    async def on_message(self, socket: WebSocket, received: Received) -> None:
        """A data message (TEXT or BINARY), one at a time in the order they came."""
        ...

    def on_violation(self, socket: WebSocket, violation: FrameError) -> None:
        """The client broke the protocol or the size limit: the connection is to be closed."""
        ...

    def on_lost(self, socket: WebSocket) -> None:
        """The socket is gone and every message that came before is handled."""
        ...


class WebSocket(BaseProtocol):
    """The protocol of an upgraded connection (the transport's, after `handshake.take_over`)."""

    __slots__ = (
        "_close_sent",
        "_closed",
        "_handler",
        "_inbox",
        "_inbox_bytes",
        "_reader",
        "_worker",
        "address",
        "connection",
        "flood",
        "peer_close_code",
        "strikes",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, handler: SocketHandler, max_message_bytes: int
    ) -> None:
        super().__init__(loop)
        self._upgraded = True  # aiohttp's BaseProtocol: no HTTP parser behind this protocol
        self._handler = handler
        self._reader = FrameReader(max_message_bytes)
        self._inbox: collections.deque[Received] | None = None
        self._inbox_bytes = 0
        self._worker: asyncio.Task[None] | None = None
        self._close_sent = False
        self._closed: asyncio.Future[None] | None = None
        #: The session's connection, once the client is authenticated (`attach`); messages
        #: wait until then.
        self.connection: Connection | None = None
        #: The session's limit on frames from this client, and its strikes (allocated by the
        #: session on the first message).
        self.flood: TokenBucket | None = None
        self.strikes = 0
        #: The code of the client's close frame, if it sent one.
        self.peer_close_code: int | None = None
        #: The client's address as the session's connection limits count it (None: not counted).
        self.address: str | None = None

    # -- reading ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        if connection is not None:  # anything from the client counts as traffic
            connection.last_heard = time.monotonic()
        for item in self._reader.feed(data):
            if isinstance(item, FrameError):
                self._handler.on_violation(self, item)
            elif item.opcode is Opcode.CLOSE:
                self._on_close_frame(item.payload)
            elif item.opcode is Opcode.PING:
                # A congested socket skips the pong: a pong answers the latest ping only anyway.
                if self.transport is not None and not self._paused:
                    self.transport.write(control_frame(Opcode.PONG, item.payload))
            elif item.opcode is not Opcode.PONG:
                self._enqueue(item)

    def _on_close_frame(self, payload: bytes) -> None:
        code = close_code_of(payload)
        if len(payload) == 1:
            code = PROTOCOL_ERROR
        self.peer_close_code = code
        if not self._close_sent:  # the client closes: answer with its code, then hang up
            self._close_sent = True
            self.write(close_frame(code if code is not None else _NORMAL, ""))
        elif self._closed is not None and not self._closed.done():
            self._closed.set_result(None)  # our close is answered
        if self.transport is not None:
            self.transport.close()

    def attach(self, connection: Connection) -> None:
        """The client is authenticated: its messages are handled from now on (those that came
        before, in order, first)."""
        self.connection = connection
        if self._inbox and self._worker is None:
            self._worker = self._loop.create_task(self._work())

    def _enqueue(self, received: Received) -> None:
        connection = self.connection
        if self._close_sent or (connection is not None and not connection.is_open):
            return  # closing: nothing more is handled
        if self._inbox is None:
            self._inbox = collections.deque()
        self._inbox.append(received)
        self._inbox_bytes += len(received.payload)
        full = self._inbox_bytes > INBOX_BYTES or len(self._inbox) > INBOX_MESSAGES
        if full and not self._reading_paused:
            self._reading_paused = True
            self._pause_transport_reading()
        if self._worker is None and connection is not None:
            self._worker = self._loop.create_task(self._work())

    async def _work(self) -> None:
        """Handle the waiting messages in order; end when none waits."""
        inbox = self._inbox
        try:
            while inbox:
                received = inbox.popleft()
                self._inbox_bytes -= len(received.payload)
                if (
                    self._reading_paused
                    and self._inbox_bytes <= INBOX_BYTES // 2
                    and len(inbox) <= INBOX_MESSAGES // 2
                ):
                    self._reading_paused = False
                    self._resume_transport_reading()
                connection = self.connection
                if connection is None or not connection.is_open:
                    break
                try:
                    await self._handler.on_message(self, received)
                except Exception as exc:  # a bug with one message must not end the session
                    log.exception("handling a message failed", error=repr(exc))
        finally:
            self._worker = None
            self._inbox = None
            self._inbox_bytes = 0
            if self.transport is None:
                self._handler.on_lost(self)

    # -- writing and closing ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    async def close(self, code: int, reason: str) -> None:
        """Send the close frame (once) and wait for the client's; then hang up. The caller
        bounds the wait (`Connection` aborts the socket after its close grace)."""
        if self.transport is None:
            return
        if not self._close_sent:
            self._close_sent = True
            self.write(close_frame(code, reason))
        if self._closed is None:
            self._closed = self._loop.create_future()
        await asyncio.shield(self._closed)
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)  # the transport is gone; a waiting drain fails
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self._worker is None:  # else the worker tells when it is done with the inbox
            self._handler.on_lost(self)
