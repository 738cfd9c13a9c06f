"""Kafka event payloads: versioned, typed, JSON on the wire.

The chat write path builds `MessageCreated` and `MessageAcknowledged` payloads inside its SQL
transaction (one round trip, see `realchat.chat.store`); these models are the contract every reader
decodes with, and the tests hold both sides to it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final, Literal

import msgspec

from realchat.events.topics import (
    CONVERSATION_RENAMED,
    MEMBERSHIP_CHANGED,
    MESSAGE_ACKNOWLEDGED,
    MESSAGE_CHANGED,
    MESSAGE_CREATED,
    PRESENCE_OFFLINE,
    PRESENCE_ONLINE,
)

#: Kafka header naming the payload's type, so a reader can route before decoding.
EVENT_TYPE_HEADER: Final = "event-type"


class MessageCreated(msgspec.Struct, frozen=True, kw_only=True):
    """A message was committed. Carries who should see it: the members when it was published
    (the outbox publisher adds them; membership only grows, so every member at write time is
    there)."""

    event_id: uuid.UUID
    conversation_id: uuid.UUID
    seq: int
    message_id: uuid.UUID
    sender_id: uuid.UUID
    content: str
    created_at: datetime
    recipients: list[uuid.UUID]


class MessageAcknowledged(msgspec.Struct, frozen=True, kw_only=True):
    """A member moved their acknowledged cursor forward to `seq`."""

    event_id: uuid.UUID
    conversation_id: uuid.UUID
    user_id: uuid.UUID
    seq: int
    acknowledged_at: datetime
    recipients: list[uuid.UUID]


PresenceStatus = Literal["online", "offline"]


class PresenceChanged(msgspec.Struct, frozen=True, kw_only=True):
    """A user's first device came online, or their last one went away.

    Online and offline go to two topics, so they may arrive out of order: `version` grows with
    every transition of the user, and a reader ignores a version it has already passed."""

    event_id: uuid.UUID
    user_id: uuid.UUID
    status: PresenceStatus
    version: int
    changed_at: datetime
    #: Users who shared a conversation with the user at the time: who may see it.
    recipients: list[uuid.UUID]


MembershipChange = Literal["added", "left", "removed"]


class MembershipChanged(msgspec.Struct, frozen=True, kw_only=True):
    """Members joined or left a conversation (committed under its row lock, so every message
    with a seq above `seq` went to the members after the change, and none before it)."""

    event_id: uuid.UUID
    conversation_id: uuid.UUID
    change: MembershipChange
    user_ids: list[uuid.UUID]
    #: Who made the change (the leaver themself for "left").
    by: uuid.UUID
    #: The conversation's last seq when the change committed.
    seq: int
    changed_at: datetime
    #: The members after the change, and the users it removed: who is told.
    recipients: list[uuid.UUID]


MessageChange = Literal["edited", "deleted"]


class MessageChanged(msgspec.Struct, frozen=True, kw_only=True):
    """A message was edited or deleted by its sender: its state as of `version` (a deleted
    message is a tombstone: empty `content`). Its `seq` never changes; a reader delivers this
    only after the message itself, and applies it only above the version it holds."""

    event_id: uuid.UUID
    conversation_id: uuid.UUID
    seq: int
    message_id: uuid.UUID
    sender_id: uuid.UUID
    change: MessageChange
    version: int
    content: str
    created_at: datetime
    changed_at: datetime
    #: The members when the change committed.
    recipients: list[uuid.UUID]


class ConversationRenamed(msgspec.Struct, frozen=True, kw_only=True):
    """A member renamed the conversation; `seq` is its last seq then (a reader delivers this
    after the messages up to it)."""

    event_id: uuid.UUID
    conversation_id: uuid.UUID
    title: str
    by: uuid.UUID
    seq: int
    renamed_at: datetime
    recipients: list[uuid.UUID]


Event = (
    MessageCreated
    | MessageAcknowledged
    | PresenceChanged
    | MembershipChanged
    | MessageChanged
    | ConversationRenamed
)

#: Each event type is published on the topic of the same name.
_decoders: dict[str, msgspec.json.Decoder[Event]] = {
    MESSAGE_CREATED: msgspec.json.Decoder(MessageCreated),
    MESSAGE_ACKNOWLEDGED: msgspec.json.Decoder(MessageAcknowledged),
    PRESENCE_ONLINE: msgspec.json.Decoder(PresenceChanged),
    PRESENCE_OFFLINE: msgspec.json.Decoder(PresenceChanged),
    MEMBERSHIP_CHANGED: msgspec.json.Decoder(MembershipChanged),
    MESSAGE_CHANGED: msgspec.json.Decoder(MessageChanged),
    CONVERSATION_RENAMED: msgspec.json.Decoder(ConversationRenamed),
}


class UnknownEventTypeError(ValueError):
    pass


def decode(event_type: str, payload: bytes) -> Event:
    """Decode and validate a payload of a known type; raise on anything else."""
    decoder = _decoders.get(event_type)
    if decoder is None:
        raise UnknownEventTypeError(event_type)
    event: Event = decoder.decode(payload)
    return event
