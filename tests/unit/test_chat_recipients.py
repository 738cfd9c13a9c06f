"""The publisher's side of an event's recipients: which events get them and how they are added."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from realchat.events.models import MessageCreated, decode
from realchat.events.topics import MESSAGE_ACKNOWLEDGED, MESSAGE_CREATED
from realchat.outbox.recipients import add_recipients, needs_recipients, with_recipients
from realchat.outbox.rows import OutboxEvent

CONVERSATION = uuid.uuid4()
MEMBERS = sorted(uuid.uuid4() for _ in range(3))
MEMBERS_JSON = json.dumps([str(m) for m in MEMBERS]).encode()


def _written(content: str, *, conversation: uuid.UUID = CONVERSATION) -> bytes:
    """A payload as the write path's SQL renders it (jsonb text: `"key": value`)."""
    fields = {
        "seq": 1,
        "content": content,
        "event_id": str(uuid.uuid4()),
        "sender_id": str(MEMBERS[0]),
        "created_at": datetime.now(UTC).isoformat(),
        "message_id": str(uuid.uuid4()),
        "conversation_id": str(conversation),
    }
    return json.dumps(fields, ensure_ascii=False).encode()


def _event(payload: bytes, event_type: str = MESSAGE_CREATED, key: str = "") -> OutboxEvent:
    return OutboxEvent(1, 0, event_type, event_type, key or str(CONVERSATION), payload, {}, 0)


def test_a_written_message_event_decodes_with_its_members_as_recipients() -> None:
    payload = with_recipients(_written("hello"), MEMBERS_JSON)
    event = decode(MESSAGE_CREATED, payload)
    assert isinstance(event, MessageCreated)
    assert (event.content, event.recipients) == ("hello", MEMBERS)


def test_content_that_spells_the_key_does_not_count_as_having_recipients() -> None:
    content = 'look: "recipients": ["nobody"] }'
    event = _event(_written(content))
    assert needs_recipients(event)
    (published,) = add_recipients([event], {str(CONVERSATION): MEMBERS_JSON})
    decoded = decode(MESSAGE_CREATED, published.payload)
    assert isinstance(decoded, MessageCreated)
    assert (decoded.content, decoded.recipients) == (content, MEMBERS)


def test_events_that_carry_recipients_or_are_of_another_type_go_out_unchanged() -> None:
    older = _event(with_recipients(_written("old"), MEMBERS_JSON))
    ack = _event(b'{"seq": 2}', MESSAGE_ACKNOWLEDGED)
    assert add_recipients([older, ack], {str(CONVERSATION): b"[]"}) == [older, ack]


def test_each_event_gets_its_own_conversations_members_and_none_when_it_has_none() -> None:
    other = uuid.uuid4()
    events = [_event(_written("a")), _event(_written("b", conversation=other), key=str(other))]
    published = add_recipients(events, {str(CONVERSATION): MEMBERS_JSON})
    recipients = [msgspec.json.decode(e.payload)["recipients"] for e in published]
    assert recipients == [[str(m) for m in MEMBERS], []]


def test_an_empty_object_gets_the_key_without_a_stray_comma() -> None:
    assert json.loads(with_recipients(b"{ }", b"[]")) == {"recipients": []}


def test_a_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        with_recipients(b"[1, 2]", MEMBERS_JSON)
