"""Who a message event turns into pending notifications for, and the webhook's signature."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime

import msgspec

from realchat.events.models import MessageCreated
from realchat.notifier.payload import PushDevice, PushNotification, encode
from realchat.notifier.store import recipients
from realchat.notifier.webhook import signature


def message(sender: uuid.UUID, to: list[uuid.UUID], seq: int = 1) -> MessageCreated:
    return MessageCreated(
        event_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        seq=seq,
        message_id=uuid.uuid4(),
        sender_id=sender,
        content="hi",
        created_at=datetime.now(UTC),
        recipients=to,
    )


def test_every_recipient_but_the_sender_once() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    rows = recipients([message(a, [a, b, c, b])])
    assert [r.user_id for r in rows] == [b, c]
    assert all(r.sender_id == a and r.seq == 1 for r in rows)


def test_a_message_to_oneself_notifies_no_one() -> None:
    a = uuid.uuid4()
    assert recipients([message(a, [a])]) == []


def test_the_payload_carries_no_message_text() -> None:
    device = PushDevice(device_id=uuid.uuid4(), platform="apns", token="tok")
    body = encode(
        PushNotification(
            idempotency_key=uuid.uuid4(),
            user_id=uuid.uuid4(),
            devices=[device],
            conversation_id=uuid.uuid4(),
            sender_id=uuid.uuid4(),
            message_count=3,
            first_seq=1,
            last_seq=3,
            attempt=1,
            created_at=datetime.now(UTC),
        )
    )
    decoded = msgspec.json.decode(body)
    assert decoded["version"] == 1
    assert decoded["devices"] == [
        {"device_id": str(device.device_id), "platform": "apns", "token": "tok"}
    ]
    assert "content" not in decoded
    assert "preview" not in decoded


def test_the_signature_is_an_hmac_of_the_body() -> None:
    expected = hmac.new(b"s3cret", b"{}", hashlib.sha256).hexdigest()
    assert signature(b"s3cret", b"{}") == f"sha256={expected}"
    assert signature(b"other", b"{}") != signature(b"s3cret", b"{}")
