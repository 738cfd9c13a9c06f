"""Typing indicators: ephemeral signals relayed between gateways over Redis pub/sub, never stored.

Why Redis pub/sub and not the outbox or a Kafka topic: a typing signal is worth something for a
few seconds and nothing after, so it must cost the write path (PostgreSQL, the outbox, Kafka's
replicated log) nothing. Gateways are stateless and any number of them serve one conversation's
members, so every gateway subscribes to one channel and keeps what concerns its own connections,
as it does with the bus's events (broadcast, `delivery.py`). Pub/sub is at-most-once: a signal
lost to a Redis hiccup is a typing line that shows late or ends early, which the receivers'
expiry rule (`TYPING_EXPIRY_S`) already covers.

The sending gateway checks membership (a per-gateway cache of each conversation's members,
filled through the chat service's read of the conversation and dropped on every membership
event), limits each user's signals per conversation, and names the recipients in the signal.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from realchat.contract.frames import BadFrame, TypingFrame, UserTypingFrame, encode
from realchat.gateway.chat_client import ChatCallError
from realchat.gateway.connection import Connection
from realchat.gateway.expiring import ExpiringMap
from realchat.gateway.hub import Hub
from realchat.gateway.wsframe import text_frame
from realchat.storage.redis import follow_channel

log = structlog.get_logger(__name__)

#: The one channel every gateway subscribes to.
CHANNEL = "realchat:typing:v1"
#: A user's `typing` true is relayed at most once per this many seconds per conversation (per
#: gateway); a stop goes through whenever a start did.
MIN_INTERVAL_S = 1.0
#: How long a conversation's member list is trusted without a membership event (a backstop
#: for events the gateway could not read: the bus away).
MEMBERS_TTL_S = 30.0
#: Conversations whose members one gateway keeps at most.
MAX_CACHED_CONVERSATIONS = 10_000
#: Pause before subscribing again after Redis failed.
RESUBSCRIBE_S = 1.0


class TypingSignal(msgspec.Struct, frozen=True):
    """What goes over the channel: who, where, and which users' devices receive it."""

    conversation_id: str
    user_id: str
    typing: bool
    #: The sending connection, which does not get its own signal back.
    origin: str
    recipients: list[str]


_signal_decoder = msgspec.json.Decoder(TypingSignal)
_signal_encoder = msgspec.json.Encoder()


class TypingLimiter:
    """Per (user, conversation): a start at most every `interval_s`, a stop only after a
    relayed start. Pure: the clock is passed in."""

    def __init__(self, interval_s: float = MIN_INTERVAL_S, forget_after_s: float = 60.0) -> None:
        self._interval_s = interval_s
        #: The last relayed state and when.
        self._last: ExpiringMap[tuple[uuid.UUID, str], bool] = ExpiringMap(forget_after_s)

    def allow(self, user_id: uuid.UUID, conversation_id: str, typing: bool, now: float) -> bool:
        last = self._last.get((user_id, conversation_id), now)
        if typing:
            return last is None or not last[0] or now - last[1] >= self._interval_s
        return last is not None and last[0]

    def relayed(self, user_id: uuid.UUID, conversation_id: str, typing: bool, now: float) -> None:
        self._last.put((user_id, conversation_id), typing, now)

    def __len__(self) -> int:
        return len(self._last)


#: Reads a conversation's member ids as a user (the chat service refuses non-members).
ReadMembers = Callable[[uuid.UUID, str], Awaitable[list[str]]]


@dataclass
class _Members:
    ids: frozenset[str]
    read_at: float


class ConversationMembers:
    """Each conversation's members as last read, until a membership event or the TTL."""

    def __init__(self, read: ReadMembers, ttl_s: float = MEMBERS_TTL_S) -> None:
        self._read = read
        self._ttl_s = ttl_s
        self._cache: dict[str, _Members] = {}

    async def of(self, user_id: uuid.UUID, conversation_id: str, now: float) -> frozenset[str]:
        """The members, if `user_id` is one; raises the chat service's refusal otherwise. A
        user missing from the cached list is read again (they may have joined since)."""
        cached = self._cache.get(conversation_id)
        if cached is not None and now - cached.read_at < self._ttl_s and str(user_id) in cached.ids:
            return cached.ids
        ids = frozenset(await self._read(user_id, conversation_id))
        if len(self._cache) >= MAX_CACHED_CONVERSATIONS:
            self._cache.pop(next(iter(self._cache)))
        self._cache[conversation_id] = _Members(ids, now)
        return ids

    def forget(self, conversation_id: str) -> None:
        self._cache.pop(conversation_id, None)


class TypingRelay:
    """Takes clients' typing frames, publishes them, and hands received signals to the hub."""

    def __init__(
        self,
        redis: aioredis.Redis,
        hub: Hub,
        members: ConversationMembers,
        limiter: TypingLimiter | None = None,
    ) -> None:
        self._redis = redis
        self._hub = hub
        self._members = members
        self._limiter = limiter or TypingLimiter()

    def forget_members(self, conversation_id: str) -> None:
        """A membership change: the next signal of the conversation reads its members again."""
        self._members.forget(conversation_id)

    async def typing(self, connection: Connection, frame: TypingFrame) -> BadFrame | None:
        """Relay one client frame; the refusal to tell the client, if any. Signals over the
        limit are dropped without a word (typing is a state, the next one carries it)."""
        user, conversation = connection.user_id, frame.conversation_id
        if not self._limiter.allow(user, conversation, frame.typing, time.monotonic()):
            return None
        try:
            members = await self._members.of(user, conversation, time.monotonic())
        except ChatCallError as error:
            return BadFrame(error.code, error.message)
        signal = TypingSignal(
            conversation, str(user), frame.typing, str(connection.session_id), sorted(members)
        )
        try:
            await self._redis.publish(CHANNEL, _signal_encoder.encode(signal))
        except (RedisError, OSError) as exc:
            log.warning("typing signal not published", error=str(exc))
            return None
        self._limiter.relayed(user, conversation, frame.typing, time.monotonic())
        return None

    def dispatch(self, payload: bytes) -> int:
        """A signal from the channel to the local connections of its recipients; how many."""
        try:
            signal = _signal_decoder.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.error("undecodable typing signal skipped", error=str(exc))
            return 0
        frame: bytes | None = None
        offered = 0
        for recipient in signal.recipients:
            try:
                user = uuid.UUID(recipient)
            except ValueError:
                continue
            for connection in self._hub.connections_of(user):
                if str(connection.session_id) == signal.origin:
                    continue
                if frame is None:
                    frame = text_frame(
                        encode(
                            UserTypingFrame(signal.conversation_id, signal.user_id, signal.typing)
                        )
                    )
                connection.push_frame(frame)
                offered += 1
        return offered

    async def run(self) -> None:
        """Receive signals for as long as the gateway runs; Redis away: subscribe again."""
        await follow_channel(
            self._redis,
            CHANNEL,
            self.dispatch,
            lost="typing channel lost; subscribing again",
            pause_s=RESUBSCRIBE_S,
        )
