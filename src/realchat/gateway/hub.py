"""Connections by user, in shards (`hash(user_id) % shards`), and the dispatch of events to them.

One asyncio loop per gateway process owns the hub, so no locks: a shard is an independent
registry with its own counters, the unit a future multi-loop gateway would hand to one loop.
Dispatch is synchronous: an event is handed to every local recipient (or found absent) before
the call returns, which is what lets the consumer commit its offset right after. Each event's
WebSocket frame is encoded once, on the first local recipient, and the same bytes go to all.
Metrics are per event or sampled, never per delivery.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections.abc import Iterator
from collections.abc import Set as AbstractSet

import msgspec
import structlog
from opentelemetry.context import Context

from realchat.contract.close_codes import CloseCode
from realchat.contract.frames import (
    ConversationUpdateFrame,
    Message,
    MessageFrame,
    MessageUpdateFrame,
    PresenceFrame,
    ReadFrame,
    ReceiptFrame,
    encode,
)
from realchat.events.models import (
    ConversationRenamed,
    MessageAcknowledged,
    MessageChanged,
    MessageCreated,
    PresenceChanged,
)
from realchat.gateway import metrics
from realchat.gateway.connection import Connection
from realchat.gateway.expiring import ExpiringMap
from realchat.gateway.flush import Flusher
from realchat.gateway.wsframe import text_frame


class Shard:
    def __init__(self) -> None:
        self._by_user: dict[uuid.UUID, set[Connection]] = {}

    def add(self, connection: Connection) -> None:
        self._by_user.setdefault(connection.user_id, set()).add(connection)

    def remove(self, connection: Connection) -> None:
        connections = self._by_user.get(connection.user_id)
        if connections is None:
            return
        connections.discard(connection)
        if not connections:
            del self._by_user[connection.user_id]

    def of(self, user_id: uuid.UUID) -> set[Connection]:
        return self._by_user.get(user_id, set())

    def connections(self) -> list[Connection]:
        return [c for user_connections in self._by_user.values() for c in user_connections]

    def __len__(self) -> int:
        return sum(len(c) for c in self._by_user.values())

    @property
    def users(self) -> int:
        return len(self._by_user)


def message_of(event: MessageCreated | MessageChanged) -> Message:
    """The message an event carries: as sent, or (a change) as it is now."""
    message = Message(
        message_id=str(event.message_id),
        conversation_id=str(event.conversation_id),
        seq=event.seq,
        sender_id=str(event.sender_id),
        content=event.content,
        created_at=event.created_at,
    )
    if isinstance(event, MessageCreated):
        return message
    return msgspec.structs.replace(
        message,
        version=event.version,
        edited_at=event.changed_at,
        deleted=event.change == "deleted",
    )


class PresenceVersions:
    """The newest presence version applied per user, so an older event that arrives later (online
    and offline travel on two topics) is dropped. Entries are forgotten after `keep_s`: reordering
    between two topics spans moments, not minutes."""

    def __init__(self, keep_s: float = 300.0) -> None:
        self._latest: ExpiringMap[uuid.UUID, int] = ExpiringMap(keep_s)

    def advance(self, user_id: uuid.UUID, version: int, now: float | None = None) -> bool:
        """Record `version` if it is newer than what was applied; False if it is not."""
        now = time.monotonic() if now is None else now
        applied = self._latest.get(user_id, now)
        if applied is not None and applied[0] >= version:
            return False
        self._latest.put(user_id, version, now)
        return True

    def __len__(self) -> int:
        return len(self._latest)


log = structlog.get_logger(__name__)

#: The answer for a user with no connection here.
_NONE: frozenset[Connection] = frozenset()
#: Parts of a keepalive round, pinged one after another across its interval (`ping_forever`).
PING_SLICES = 20


class Hub:
    def __init__(self, shards: int) -> None:
        self._shards = [Shard() for _ in range(shards)]
        self._presence_versions = PresenceVersions()
        #: The shards' sets of connections by user, the same set objects, in one dict.
        self._index: dict[uuid.UUID, set[Connection]] = {}
        #: Writes every connection's waiting frames once per loop iteration.
        self.flusher = Flusher()

    def shard_of(self, user_id: uuid.UUID) -> Shard:
        return self._shards[zlib.crc32(user_id.bytes) % len(self._shards)]

    def register(self, connection: Connection) -> None:
        shard = self.shard_of(connection.user_id)
        shard.add(connection)
        self._index[connection.user_id] = shard.of(connection.user_id)

    def unregister(self, connection: Connection) -> None:
        shard = self.shard_of(connection.user_id)
        shard.remove(connection)
        if not shard.of(connection.user_id):
            self._index.pop(connection.user_id, None)

    def connections_of(self, user_id: uuid.UUID) -> AbstractSet[Connection]:
        """The user's connections here (one dict lookup: this runs per recipient per event)."""
        return self._index.get(user_id, _NONE)

    def all_connections(self) -> Iterator[Connection]:
        for shard in self._shards:
            yield from shard.connections()

    def __len__(self) -> int:
        return sum(len(s) for s in self._shards)

    async def ping_forever(self, interval_s: float, slices: int = PING_SLICES) -> None:
        """Keep every connection alive with one timer for all of them (a task per connection
        would cost memory on each); the pings go out in order with each one's frames. The same
        round samples each connection's backlog (a sample, not an observation per frame).

        A round is spread over its interval in `slices` parts, each connection always in the
        same part (by its session id), so each is pinged once an interval: pinging a gateway's
        thousands of connections in one loop iteration held up every delivery behind it, and
        had a client process with thousands of sessions (the load generator) answer them all
        at once, every interval."""
        step = interval_s / slices
        while True:
            parts: list[list[Connection]] = [[] for _ in range(slices)]
            for connection in self.all_connections():
                parts[connection.session_id.int % slices].append(connection)
            for part in parts:
                await asyncio.sleep(step)
                for connection in part:
                    metrics.QUEUE_DEPTH.observe(connection.pending_frames)
                    connection.ping()

    async def close_idle_forever(self, idle_timeout_s: float) -> None:
        """Close (4002) every connection nothing has come from for `idle_timeout_s`, checked
        every `idle_timeout_s / 60` (at most 1 s): one sweep for all, instead of a timer per
        connection and per receive."""
        interval_s = min(1.0, idle_timeout_s / 60)
        while True:
            await asyncio.sleep(interval_s)
            horizon = time.monotonic() - idle_timeout_s
            # One pass over the index, no list of every connection (this runs every second).
            idle = [c for conns in self._index.values() for c in conns if c.last_heard < horizon]
            for connection in idle:
                if connection.is_open:
                    log.info("idle connection closed", user_id=str(connection.user_id))
                    connection.close(CloseCode.IDLE_TIMEOUT, "idle timeout")

    @property
    def users(self) -> int:
        """Users with a connection here: what a leaking registry would grow."""
        return sum(s.users for s in self._shards)

    def dispatch_message(self, event: MessageCreated, trace: Context | None = None) -> int:
        """Offer the message to every local connection of its recipients; return how many.

        Delivery latency is observed once per event (commit to hand-off), not per recipient."""
        frame: bytes | None = None
        conversation_id = str(event.conversation_id)
        seq = event.seq
        offered = 0
        for user_id in event.recipients:
            connections = self.connections_of(user_id)
            if not connections:
                continue
            if frame is None:  # encoded once, only if someone here receives it
                frame = text_frame(encode(MessageFrame(message_of(event))))
            # No copy of the set: nothing in offer_live unregisters a connection.
            for connection in connections:
                connection.offer_live(conversation_id, seq, frame, trace)
            offered += len(connections)
        if offered:
            metrics.DELIVERY_LATENCY.observe(max(0.0, time.time() - event.created_at.timestamp()))
        return offered

    def dispatch_change(self, event: MessageChanged | ConversationRenamed) -> int:
        """Offer an edit, delete or rename to the recipients' connections; each sends it once
        the message it concerns has gone out there (`Connection.offer_change`)."""
        frame: bytes | None = None
        conversation_id = str(event.conversation_id)
        of_message = isinstance(event, MessageChanged)
        offered = 0
        for user_id in event.recipients:
            connections = self.connections_of(user_id)
            if not connections:
                continue
            if frame is None:
                frame = text_frame(encode(_change_frame(event)))
            for connection in connections:
                connection.offer_change(conversation_id, event.seq, frame, of_message=of_message)
            offered += len(connections)
        return offered

    def dispatch_receipt(self, event: MessageAcknowledged) -> int:
        """Tell the other members' connections that a member acknowledged up to a seq, and the
        member's own connections that their read position moved (a `read` frame)."""
        frame: bytes | None = None
        offered = 0
        for connection in list(self.connections_of(event.user_id)):
            connection.push(encode(ReadFrame(str(event.conversation_id), event.seq)))
            offered += 1
        for user_id in event.recipients:
            if user_id == event.user_id:
                continue
            for connection in list(self.connections_of(user_id)):
                if frame is None:
                    frame = text_frame(
                        encode(
                            ReceiptFrame(str(event.conversation_id), str(event.user_id), event.seq)
                        )
                    )
                connection.push_frame(frame)
                offered += 1
        return offered

    def dispatch_presence(self, event: PresenceChanged) -> int | None:
        """Tell the local connections of users who share a conversation; None if the event is
        older than one already applied (it is dropped)."""
        if not self._presence_versions.advance(event.user_id, event.version):
            return None
        frame: bytes | None = None
        offered = 0
        for user_id in event.recipients:
            for connection in list(self.connections_of(user_id)):
                if frame is None:
                    frame = text_frame(encode(PresenceFrame(str(event.user_id), event.status)))
                connection.push_frame(frame)
                offered += 1
        return offered


def _change_frame(
    event: MessageChanged | ConversationRenamed,
) -> MessageUpdateFrame | ConversationUpdateFrame:
    if isinstance(event, MessageChanged):
        return MessageUpdateFrame(message_of(event))
    return ConversationUpdateFrame(str(event.conversation_id), event.title, str(event.by))
