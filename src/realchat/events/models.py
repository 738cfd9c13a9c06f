"""Kafka event payloads: versioned, typed, JSON on the wire.

The chat write path builds `MessageCreated` and `MessageAcknowledged` payloads inside its SQL
transaction (one round trip, see `realchat.chat.store`); these models are the contract every reader
decodes with, and the tests hold both sides to it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

import msgspec

from realchat.events.topics import MESSAGE_ACKNOWLEDGED, MESSAGE_CREATED

#: Kafka header naming the payload's type, so a reader can route before decoding.
EVENT_TYPE_HEADER: Final = "event-type"


class MessageCreated(msgspec.Struct, frozen=True, kw_only=True):
    """A message was committed. Carries who should see it (members at write time)."""

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


#: Each event type is published on the topic of the same name.
_decoders: dict[str, msgspec.json.Decoder[MessageCreated | MessageAcknowledged]] = {
    MESSAGE_CREATED: msgspec.json.Decoder(MessageCreated),
    MESSAGE_ACKNOWLEDGED: msgspec.json.Decoder(MessageAcknowledged),
}


class UnknownEventTypeError(ValueError):
    pass


def decode(event_type: str, payload: bytes) -> MessageCreated | MessageAcknowledged:
    """Decode and validate a payload of a known type; raise on anything else."""
    decoder = _decoders.get(event_type)
    if decoder is None:
        raise UnknownEventTypeError(event_type)
    event: MessageCreated | MessageAcknowledged = decoder.decode(payload)
    return event
