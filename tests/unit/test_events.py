import subprocess
import sys
import uuid

import msgspec
import pytest

from realchat.events.models import MessageCreated, UnknownEventTypeError, decode
from realchat.events.topics import MESSAGE_CREATED


def test_payload_decodes_into_the_typed_event() -> None:
    ids = [uuid.uuid4() for _ in range(4)]
    payload = msgspec.json.encode(
        {
            "event_id": str(ids[0]),
            "conversation_id": str(ids[1]),
            "seq": 3,
            "message_id": str(ids[2]),
            "sender_id": str(ids[3]),
            "content": "hi",
            "created_at": "2026-11-27T04:24:26.068911+00:00",
            "recipients": [str(ids[3])],
        }
    )
    event = decode(MESSAGE_CREATED, payload)
    assert isinstance(event, MessageCreated)
    assert (event.seq, event.conversation_id, event.recipients) == (3, ids[1], [ids[3]])
    assert event.created_at.utcoffset() is not None


def test_missing_fields_and_unknown_types_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(MESSAGE_CREATED, b'{"seq": 1}')
    with pytest.raises(UnknownEventTypeError):
        decode("chat.message.deleted.v9", b"{}")


def test_the_event_schema_imports_no_kafka_client() -> None:
    """`realchat.events` is the pure schema every side shares: reading an event must not need
    librdkafka. A fresh interpreter, since this one may have imported the client already."""
    probe = (
        "import sys, realchat.events, realchat.events.models, realchat.events.topics; "
        "assert 'confluent_kafka' not in sys.modules, "
        "sorted(m for m in sys.modules if 'kafka' in m)"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
