"""`realchat bench dispatch`'s socket scenarios: every frame reaches its reader process."""

from __future__ import annotations

import uuid

import pytest

from realchat.contract.frames import MessageFrame, encode
from realchat.events.models import MessageCreated, decode
from realchat.events.topics import MESSAGE_CREATED
from realchat.gateway.hub import message_of
from realchat.gateway.wsframe import text_frame
from realchat.loadtest.bench_dispatch import _payload, _Record
from realchat.loadtest.bench_sockets import fan_out_over_sockets


def frame_of(payload: bytes) -> bytes:
    event = decode(MESSAGE_CREATED, payload)
    assert isinstance(event, MessageCreated)
    return text_frame(encode(MessageFrame(message_of(event))))


@pytest.mark.parametrize("batch", [1, 500])
async def test_every_frame_of_every_event_reaches_every_subscriber(batch: int) -> None:
    subscribers = [uuid.uuid4() for _ in range(3)]
    conversation = uuid.uuid4()
    payloads = [_payload(conversation, seq, subscribers) for seq in range(1, 6)]
    cpu, wall, received = await fan_out_over_sockets(
        [_Record(p) for p in payloads], subscribers, batch
    )
    assert received == len(subscribers) * sum(len(frame_of(p)) for p in payloads)
    assert cpu > 0
    assert wall > 0
