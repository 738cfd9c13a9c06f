"""One client connection: ready frames written straight to its socket, a bounded backlog when
the socket does not take them, and the conversation cursors (`cursor.py`) that keep delivery
contiguous and duplicate-free.

The fast path of a delivery: ask the cursor, append the frame (already encoded for everyone)
to the pending list; the gateway's `Flusher` writes each connection's pending frames once per
loop iteration, and a connection with `flush_frames` waiting writes them at once. No task, no
queue, no metric per delivery.

Bounds: a socket whose buffer is above its high-water mark is congested; frames then wait in
the pending list, at most `queue_size` frames and `queue_bytes` bytes. Past either bound the
client is cut off (4008) instead of letting memory grow. Backfills (sync) wait for room and use
at most half the frames, so a syncing client keeps headroom for live traffic; one that makes no
room for `backfill_stall_s` is cut off too.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Literal, Protocol

import structlog
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from realchat.contract.close_codes import CloseCode
from realchat.gateway import metrics
from realchat.gateway.cursor import ConversationCursor, Cursors, Verdict
from realchat.gateway.flush import Flusher
from realchat.gateway.wsframe import PING, text_frame
from realchat.observability.tracing import tracer

log = structlog.get_logger(__name__)

#: Pending frames written at once, without waiting for the end of the iteration: a burst for one
#: client goes out in chunks of this many instead of piling up.
FLUSH_FRAMES = 64
#: The same in bytes.
FLUSH_BYTES = 64 * 1024
#: Default bound on bytes waiting for a congested socket.
DEFAULT_QUEUE_BYTES = 2 * 1024 * 1024


class FrameSink(Protocol):
    """The transport under a connection (a WebSocket's socket; a fake in unit tests)."""

    def write(self, data: bytes) -> None:
        """Hand whole WebSocket frames to the socket (never blocks; the transport buffers)."""
        ...

    def writable(self) -> bool:
        """The socket's buffer is below its high-water mark: a write goes out without queueing
        behind a backlog."""
        ...

    async def drained(self) -> None:
        """Until the buffer is below its low-water mark; ConnectionError if the socket is gone."""
        ...

    async def close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        ...


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


#: Module constants for the per-delivery checks (an enum member is a class attribute lookup).
_OPEN = State.OPEN
_DELIVER = Verdict.DELIVER

GapHandler = Callable[["Connection", str], None]

#: A live event waiting for live delivery to start: conversation, seq, frame, trace.
#: What a held live event is: a message, a change of a message, a change of the conversation.
HeldKind = Literal["message", "message_change", "conversation_change"]
#: A live event held until live delivery starts: (conversation, seq, frame, trace, kind).
Held = tuple[str, int, bytes, Context | None, HeldKind]


class Connection:
    __slots__ = (
        "__weakref__",
        "_backfill_room",
        "_backfill_stall_s",
        "_backfills",
        "_close_grace_s",
        "_closing",
        "_cursors",
        "_drain",
        "_flush_at",
        "_flusher",
        "_grace",
        "_held",
        "_max_bytes",
        "_max_frames",
        "_on_gap",
        "_pending",
        "_pending_bytes",
        "_room",
        "_sink",
        "_sync_grace_s",
        "_sync_lock",
        "_tasks",
        "close_code",
        "last_heard",
        "session_id",
        "state",
        "user_id",
    )

    def __init__(
        self,
        user_id: uuid.UUID,
        sink: FrameSink,
        *,
        queue_size: int,
        close_grace_s: float,
        on_gap: GapHandler,
        backfill_stall_s: float | None = None,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        sync_grace_s: float | None = None,
        flusher: Flusher | None = None,
    ) -> None:
        """`sync_grace_s`: live delivery starts once the client's first sync is handled, or this
        long after the first live event if none comes; None: at once (a client that never
        syncs)."""
        self.user_id = user_id
        self.session_id = uuid.uuid4()
        self.state = State.OPEN
        #: The close code this side sent, if it closed the connection (why the session ended).
        self.close_code: int | None = None
        #: When anything (a frame, a ping, a pong) last came from the client (time.monotonic).
        self.last_heard = time.monotonic()
        self._sink = sink
        self._cursors = Cursors(live=sync_grace_s is None)
        self._sync_grace_s = sync_grace_s
        self._flusher = flusher if flusher is not None else Flusher()
        self._max_frames = queue_size
        self._max_bytes = queue_bytes
        self._flush_at = min(FLUSH_FRAMES, queue_size)
        self._backfill_room = max(1, queue_size // 2)
        self._close_grace_s = close_grace_s
        self._backfill_stall_s = backfill_stall_s
        self._on_gap = on_gap
        # Allocated on first use: most connections never need most of these.
        self._pending: list[bytes] | None = None
        self._pending_bytes = 0
        self._held: list[Held] | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._drain: asyncio.Task[None] | None = None
        self._room: asyncio.Event | None = None
        self._sync_lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[Any]] | None = None
        self._backfills: dict[str, asyncio.Task[None]] | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN

    @property
    def pending_frames(self) -> int:
        """Frames waiting for the socket (not yet written)."""
        return len(self._pending) if self._pending else 0

    @property
    def sync_lock(self) -> asyncio.Lock:
        """Serialises this connection's syncs."""
        if self._sync_lock is None:
            self._sync_lock = asyncio.Lock()
        return self._sync_lock

    # -- writing -------------------------------------------------------------------------------

    def push(self, payload: bytes) -> bool:
        """Send one JSON frame without waiting; a congested client past the bounds is cut off.
        False if dropped."""
        return self.push_frame(text_frame(payload))

    def push_frame(self, frame: bytes) -> bool:
        """Send a ready WebSocket frame (shared by every recipient of an event)."""
        if self.state is not _OPEN:
            return False
        pending = self._pending
        if pending is None:  # the list is kept once allocated: no allocation per delivery
            pending = self._pending = []
        if not pending and self._drain is None:
            self._flusher.mark(self)
        pending.append(frame)
        self._pending_bytes += len(frame)
        if len(pending) >= self._flush_at or self._pending_bytes >= FLUSH_BYTES:
            if self._drain is None and self._sink.writable():
                self._write_pending()
            elif len(pending) > self._max_frames or self._pending_bytes > self._max_bytes:
                self.cut_off_slow_consumer()
                return False
        return True

    def flush(self) -> None:
        """Write the pending frames if the socket takes them; else wait for it to drain."""
        if not self._pending or self._drain is not None or self.state is not _OPEN:
            return
        if self._sink.writable():
            self._write_pending()
        else:
            self._drain = self.spawn(self._drain_and_write())

    def _write_pending(self) -> None:
        pending = self._pending
        if not pending:
            return
        count = len(pending)
        self._sink.write(pending[0] if count == 1 else b"".join(pending))
        self._flusher.written += count
        pending.clear()
        self._pending_bytes = 0
        if self._room is not None:
            self._room.set()

    async def _drain_and_write(self) -> None:
        """Congested: wait for the socket, write what piled up meanwhile, until it keeps up.

        Never cancelled by `close`: aiohttp shares one drain waiter per socket, and cancelling
        it would fail the close frame's own wait (no close frame, no abort)."""
        try:
            while self.state is State.OPEN:
                await self._sink.drained()
                if self.state is not State.OPEN or not self._pending:
                    return
                self._write_pending()
                if self._sink.writable():
                    return
        finally:
            self._drain = None

    async def push_backfill(self, payload: bytes) -> bool:
        """Send a backfilled frame once at most half the bound waits; a client that makes no
        room within `backfill_stall_s` is cut off as slow (it holds a backfill slot)."""
        while self.is_open and self.pending_frames >= self._backfill_room:
            if self._room is None:
                self._room = asyncio.Event()
            self._room.clear()
            self.flush()
            if self.pending_frames < self._backfill_room:
                break
            try:
                await asyncio.wait_for(self._room.wait(), self._backfill_stall_s)
            except TimeoutError:
                self.cut_off_slow_consumer()
                return False
        return self.push(payload)

    def ping(self) -> None:
        """Send a keepalive in order with the rest. A full backlog needs none: the client is
        about to be cut off."""
        if self.is_open and self.pending_frames < self._max_frames:
            self.push_frame(PING)

    # -- conversation cursors ------------------------------------------------------------------

    def cursor(self, conversation_id: str) -> ConversationCursor:
        return self._cursors.of(conversation_id)

    def offer_live(
        self, conversation_id: str, seq: int, frame: bytes, trace: Context | None = None
    ) -> None:
        """A live message event (its ready frame) for this connection: the cursor decides."""
        verdict = self._cursors.on_live(conversation_id, seq)
        if verdict is _DELIVER:
            if trace is None:
                self.push_frame(frame)
            else:  # traced: the span covers the hand-off (the write follows in this iteration)
                with tracer().start_as_current_span(
                    "ws write",
                    context=trace,
                    kind=SpanKind.PRODUCER,
                    attributes={"realchat.user_id": str(self.user_id)},
                ):
                    self.push_frame(frame)
        elif verdict is Verdict.HOLD:
            self._hold((conversation_id, seq, frame, trace, "message"))
        elif verdict is Verdict.BACKFILL:
            metrics.GAPS.inc()
            self._on_gap(self, conversation_id)
        elif verdict is Verdict.DUPLICATE:
            metrics.DUPLICATES_SUPPRESSED.inc()
        if verdict is _DELIVER or verdict is Verdict.ECHO:
            cursor = self._cursors.of(conversation_id)
            if cursor.deferring:
                self.release_changes(cursor)

    def offer_change(
        self, conversation_id: str, seq: int, frame: bytes, *, of_message: bool
    ) -> None:
        """A live change (edit, delete, rename) concerning position `seq`: sent once the
        message there has gone out on this connection (`ConversationCursor.on_change`)."""
        verdict = self._cursors.on_change(conversation_id, seq, frame, of_message=of_message)
        if verdict is _DELIVER:
            self.push_frame(frame)
        elif verdict is Verdict.HOLD:
            kind: HeldKind = "message_change" if of_message else "conversation_change"
            self._hold((conversation_id, seq, frame, None, kind))

    def release_changes(self, cursor: ConversationCursor) -> None:
        """Send the changes that were waiting for messages now delivered."""
        for frame in cursor.release():
            self.push_frame(frame)

    def note_own_send(self, conversation_id: str, seq: int) -> None:
        """The client got this message in its send_ok: its live echo is not sent."""
        self._cursors.of(conversation_id).on_own_send(seq)

    def _hold(self, held: Held) -> None:
        if self._held is None:
            self._held = []
            grace = self._sync_grace_s if self._sync_grace_s is not None else 0.0
            self._grace = asyncio.get_running_loop().call_later(grace, self.start_live)
        self._held.append(held)
        if len(self._held) > self._max_frames:
            self.start_live()  # holding is bounded like the backlog: deliver rather than grow

    def start_live(self) -> None:
        """Live delivery starts (the first sync is handled, or no sync came in time): the
        events held so far go through their cursors, in the order they came."""
        if not self._cursors.start_live():
            return
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        held, self._held = self._held, None
        for conversation_id, seq, frame, trace, kind in held or ():
            if kind == "message":
                self.offer_live(conversation_id, seq, frame, trace)
            else:
                self.offer_change(conversation_id, seq, frame, of_message=kind == "message_change")

    def running_backfill(self, conversation_id: str) -> asyncio.Task[None] | None:
        task = None if self._backfills is None else self._backfills.get(conversation_id)
        return task if task is not None and not task.done() else None

    def run_backfill(
        self, conversation_id: str, coro: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        if self._backfills is None:
            self._backfills = {}
        task = self._backfills[conversation_id] = self.spawn(coro)
        task.add_done_callback(lambda _: self._forget_backfill(conversation_id, task))
        return task

    def _forget_backfill(self, conversation_id: str, task: asyncio.Task[None]) -> None:
        if self._backfills is not None and self._backfills.get(conversation_id) is task:
            del self._backfills[conversation_id]

    # -- tasks and lifecycle -------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run work for this connection; it is cancelled when the connection ends."""
        task = asyncio.create_task(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    def cut_off_slow_consumer(self) -> None:
        if not self.is_open:
            return
        metrics.SLOW_CONSUMERS.inc()
        log.warning(
            "slow consumer cut off", user_id=str(self.user_id), session_id=str(self.session_id)
        )
        self.close(CloseCode.SLOW_CONSUMER, "send queue full; reconnect and sync")

    def close(self, code: int, reason: str) -> None:
        """Stop sending, drop what waits, send the close frame; if the client does not take
        it within the grace period, drop the TCP connection."""
        if not self.is_open:
            return
        self.state = State.CLOSING
        self.close_code = code
        self._drop_waiting()
        self._closing = self.spawn(self._close_with_grace(code, reason))

    def _drop_waiting(self) -> None:
        self._pending = None
        self._pending_bytes = 0
        self._held = None
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if self._room is not None:
            self._room.set()

    async def _close_with_grace(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self._sink.close(code, reason), timeout=self._close_grace_s)
        except (TimeoutError, ConnectionError):
            self._sink.abort()

    async def finish(self) -> None:
        """The session is over: let a close handshake end (within its grace), then cancel
        everything this connection still runs."""
        self.state = State.CLOSED
        self._drop_waiting()
        if self._closing is not None:
            # Cancelled early, the close would drop the TCP connection with the client's frames
            # still unread: that is a reset, which can lose the close frame (a flooding client
            # saw 1006 instead of 1008).
            await asyncio.wait([self._closing])
        tasks = list(self._tasks or ())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _log_failure(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, ConnectionError):
        log.error("connection task failed", error=repr(exc))
