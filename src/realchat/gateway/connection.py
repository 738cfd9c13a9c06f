"""One client connection: a bounded send queue drained by a writer task, and per-conversation
cursors that keep delivery contiguous and duplicate-free.

Bounds: the queue holds at most `queue_size` frames. Live events are queued without waiting; a
full queue cuts the client off (4008) instead of letting memory grow. Backfills (sync) wait for
room and use at most half the queue, so a syncing client keeps headroom for live traffic; one
that makes no room for `backfill_stall_s` is cut off too.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import structlog
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from realchat.contract.close_codes import CloseCode
from realchat.gateway import metrics
from realchat.observability.tracing import tracer

log = structlog.get_logger(__name__)


class FrameSink(Protocol):
    """The transport under a connection (a WebSocket; a fake in unit tests)."""

    async def send(self, frame: bytes) -> None: ...

    async def ping(self) -> None:
        """A transport-level keepalive (a WebSocket ping)."""
        ...

    async def close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        ...


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass
class Cursor:
    """Delivery state of one conversation on one connection."""

    #: Highest seq delivered contiguously; None until the first live event or a sync sets it.
    delivered: int | None = None
    #: A backfill owns this conversation: live events are not queued, only remembered.
    syncing: bool = False
    #: Highest live seq seen (and not queued) while syncing: the backfill must reach it.
    seen_while_syncing: int = 0
    backfill: asyncio.Task[None] | None = None
    #: Seqs this client sent itself and already got in a send_ok: their live echo is not queued.
    echoes: set[int] = field(default_factory=set)


class Outgoing(NamedTuple):
    """A queued frame, with what the writer needs to measure and trace its delivery."""

    frame: bytes
    #: When the message was committed (epoch seconds): delivery latency is measured at the write.
    created_at: float | None = None
    #: The trace of the event that produced it: the socket write becomes a span of that trace.
    trace: Context | None = None


#: Queued like a frame, so that the writer task sends the keepalive in order with the rest.
PING = Outgoing(b"")

GapHandler = Callable[["Connection", str], None]

#: Bound on remembered own sends per conversation (a client sending faster than Kafka echoes).
MAX_PENDING_ECHOES = 64


class Connection:
    def __init__(
        self,
        user_id: uuid.UUID,
        sink: FrameSink,
        *,
        queue_size: int,
        close_grace_s: float,
        on_gap: GapHandler,
        backfill_stall_s: float | None = None,
    ) -> None:
        self.user_id = user_id
        self.session_id = uuid.uuid4()
        self.state = State.OPEN
        self.cursors: dict[str, Cursor] = {}
        self.sync_lock = asyncio.Lock()
        self._sink = sink
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=queue_size)
        self._backfill_room = max(1, queue_size // 2)
        self._room = asyncio.Event()
        self._room.set()
        self._close_grace_s = close_grace_s
        self._backfill_stall_s = backfill_stall_s
        self._on_gap = on_gap
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        #: The close code this side sent, if it closed the connection (why the session ended).
        self.close_code: int | None = None

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN

    # -- queueing ------------------------------------------------------------------------------

    def push(
        self, frame: bytes, created_at: float | None = None, trace: Context | None = None
    ) -> bool:
        """Queue a frame without waiting; a full queue cuts the client off. False if dropped."""
        if not self.is_open:
            return False
        try:
            self._queue.put_nowait(Outgoing(frame, created_at, trace))
        except asyncio.QueueFull:
            self.cut_off_slow_consumer()
            return False
        metrics.QUEUE_DEPTH.observe(self._queue.qsize())
        if self._queue.qsize() >= self._backfill_room:
            self._room.clear()
        return True

    def ping(self) -> None:
        """Queue a keepalive. A full queue needs none: the client is about to be cut off."""
        if self.is_open:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(PING)

    async def push_backfill(self, frame: bytes) -> bool:
        """Queue a backfilled frame once the queue is at most half full; a client that makes
        no room within `backfill_stall_s` is cut off as slow (it holds a backfill slot)."""
        while self.is_open and self._queue.qsize() >= self._backfill_room:
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), self._backfill_stall_s)
            except TimeoutError:
                self.cut_off_slow_consumer()
                return False
        return self.push(frame)

    def cursor(self, conversation_id: str) -> Cursor:
        cursor = self.cursors.get(conversation_id)
        if cursor is None:
            cursor = self.cursors[conversation_id] = Cursor()
        return cursor

    def offer_live(
        self,
        conversation_id: str,
        seq: int,
        frame: bytes,
        created_at: float | None = None,
        trace: Context | None = None,
    ) -> None:
        """A live message event for this connection: queue it, suppress it, or start a backfill."""
        cursor = self.cursor(conversation_id)
        if cursor.syncing:
            cursor.seen_while_syncing = max(cursor.seen_while_syncing, seq)
        elif cursor.delivered is None or seq == cursor.delivered + 1:
            if seq in cursor.echoes:  # Kafka keeps order: everything before it was delivered
                cursor.echoes.discard(seq)
                cursor.delivered = seq
            elif self.push(frame, created_at, trace):
                cursor.delivered = seq
        elif seq <= cursor.delivered:
            metrics.DUPLICATES_SUPPRESSED.inc()
        else:
            metrics.GAPS.inc()
            cursor.seen_while_syncing = seq
            self._on_gap(self, conversation_id)

    def note_own_send(self, conversation_id: str, seq: int) -> None:
        """The client got this message in its send_ok, so its live echo need not be queued.

        The cursor does not move yet: messages before it may still be on their way through Kafka,
        which delivers them before the echo."""
        cursor = self.cursor(conversation_id)
        if cursor.delivered is not None and seq <= cursor.delivered:
            return
        if len(cursor.echoes) >= MAX_PENDING_ECHOES:
            cursor.echoes.discard(min(cursor.echoes))
        cursor.echoes.add(seq)

    # -- tasks and lifecycle -------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run work for this connection; it is cancelled when the connection ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    def start_writer(self) -> None:
        self._writer = self.spawn(self._write_forever())

    async def _write_forever(self) -> None:
        while True:
            item = await self._queue.get()
            if self._queue.qsize() < self._backfill_room:
                self._room.set()
            if item is PING:
                await self._sink.ping()
                continue
            if item.trace is None:
                await self._sink.send(item.frame)
            else:
                with tracer().start_as_current_span(
                    "ws write",
                    context=item.trace,
                    kind=SpanKind.PRODUCER,
                    attributes={"realchat.user_id": str(self.user_id)},
                ):
                    await self._sink.send(item.frame)
            if item.created_at is not None:
                metrics.DELIVERY_LATENCY.observe(max(0.0, time.time() - item.created_at))
            metrics.FRAMES_SENT.inc()

    def cut_off_slow_consumer(self) -> None:
        if not self.is_open:
            return
        metrics.SLOW_CONSUMERS.inc()
        log.warning(
            "slow consumer cut off", user_id=str(self.user_id), session_id=str(self.session_id)
        )
        self.close(CloseCode.SLOW_CONSUMER, "send queue full; reconnect and sync")

    def close(self, code: int, reason: str) -> None:
        """Stop queueing, drop what is queued, send the close frame; if the client does not
        take it within the grace period, drop the TCP connection."""
        if not self.is_open:
            return
        self.state = State.CLOSING
        self.close_code = code
        while not self._queue.empty():
            self._queue.get_nowait()
        self._room.set()
        # The writer is not cancelled: it may be waiting for the transport to drain, and aiohttp
        # shares that wait between writers, so cancelling it made the close frame's own wait fail
        # at once: no close frame, no abort, a stalled client never dropped. With the queue empty
        # it sends at most the frame it holds, before the close frame.
        self._closing = self.spawn(self._close_with_grace(code, reason))

    async def _close_with_grace(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self._sink.close(code, reason), timeout=self._close_grace_s)
        except (TimeoutError, ConnectionError):
            self._sink.abort()

    async def finish(self) -> None:
        """The session is over: let a close handshake end (within its grace), then cancel
        everything this connection still runs."""
        self.state = State.CLOSED
        self._room.set()
        if self._closing is not None:
            # Cancelled early, the close would drop the TCP connection with the client's frames
            # still unread: that is a reset, which can lose the close frame (a flooding client
            # saw 1006 instead of 1008).
            await asyncio.wait([self._closing])
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _log_failure(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, ConnectionError):
        log.error("connection task failed", error=repr(exc))
