from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from realchat.contract.frames import AckFrame, BadFrame, SendFrame, SyncFrame, decode_client_frame
from realchat.events.models import MessageAcknowledged, MessageCreated
from realchat.gateway.hub import Hub
from realchat.gateway.ratelimit import TokenBucket
from tests.unit.gateway.fakes import connect


async def test_events_reach_every_device_of_every_recipient_and_no_one_else() -> None:
    hub = Hub(shards=4)
    alice, bob, eve = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    devices = [connect(hub, alice), connect(hub, alice), connect(hub, bob)]
    outsider = connect(hub, eve)
    conversation = uuid.uuid4()
    event = MessageCreated(
        event_id=uuid.uuid4(), conversation_id=conversation, seq=1, message_id=uuid.uuid4(),
        sender_id=alice, content="hi", created_at=datetime.now(UTC), recipients=[alice, bob],
    )  # fmt: skip
    assert hub.dispatch_message(event) == 3
    receipt = MessageAcknowledged(
        event_id=uuid.uuid4(), conversation_id=conversation, user_id=bob, seq=1,
        acknowledged_at=datetime.now(UTC), recipients=[alice, bob],
    )  # fmt: skip
    # Alice's two devices get the receipt; bob's own device his new read position instead.
    assert hub.dispatch_receipt(receipt) == 3
    await asyncio.sleep(0.01)
    for _, sink in devices:
        assert sink.seqs(str(conversation)) == [1]
    assert [f["type"] for f in devices[0][1].frames] == ["message", "receipt"]
    assert devices[2][1].frames[1:] == [
        {"type": "read", "conversation_id": str(conversation), "seq": 1}
    ]
    assert outsider[1].frames == []
    for conn, _ in [*devices, outsider]:
        hub.unregister(conn)
        await conn.finish()
    assert len(hub) == 0


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"not json", "invalid_json"),
        (b'{"type": "teleport"}', "unknown_type"),
        (b'{"no": "type"}', "missing_type"),
        (b'{"type": "ack", "conversation_id": "c", "seq": "seven"}', "invalid_frame"),
        (b'{"type": "send", "conversation_id": "c"}', "invalid_frame"),
        (b"[1, 2]", "invalid_frame"),
    ],
)
def test_bad_frames_name_their_problem(raw: bytes, code: str) -> None:
    with pytest.raises(BadFrame) as bad:
        decode_client_frame(raw)
    assert bad.value.code == code


def test_good_frames_decode_to_their_types() -> None:
    assert isinstance(
        decode_client_frame(
            b'{"type":"send","conversation_id":"c","client_msg_id":"k","content":"x"}'
        ),
        SendFrame,
    )
    assert decode_client_frame(b'{"type":"sync"}') == SyncFrame(positions=None)
    assert decode_client_frame(b'{"type":"ack","conversation_id":"c","seq":3}') == AckFrame("c", 3)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    start = bucket.updated
    assert all(bucket.take(start) for _ in range(5))
    assert not bucket.take(start)
    assert bucket.take(start + 0.11)  # one token back after 1/rate seconds
    assert not bucket.take(start + 0.11)
