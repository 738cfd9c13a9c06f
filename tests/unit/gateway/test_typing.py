"""The typing relay's parts without Redis: the limiter, the member cache, and dispatch of a
received signal to local connections."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import msgspec
import pytest

from realchat.contract.frames import TypingFrame, decode_client_frame
from realchat.gateway.chat_client import ChatCallError
from realchat.gateway.hub import Hub
from realchat.gateway.typing import (
    ConversationMembers,
    TypingLimiter,
    TypingRelay,
    TypingSignal,
)
from tests.unit.gateway.fakes import connect

USER = uuid.uuid4()


def test_typing_frame_defaults_to_started_and_takes_a_stop() -> None:
    assert decode_client_frame(b'{"type":"typing","conversation_id":"c"}') == TypingFrame("c")
    stop = decode_client_frame(b'{"type":"typing","conversation_id":"c","typing":false}')
    assert stop == TypingFrame("c", typing=False)


def test_limiter_relays_one_start_per_interval_and_a_stop_only_after_a_start() -> None:
    limiter = TypingLimiter(interval_s=1.0)
    assert not limiter.allow(USER, "c", False, now=0.0)  # nothing to stop
    assert limiter.allow(USER, "c", True, now=0.0)
    limiter.relayed(USER, "c", True, now=0.0)
    assert not limiter.allow(USER, "c", True, now=0.5)
    assert limiter.allow(USER, "other", True, now=0.5)  # per conversation
    assert limiter.allow(uuid.uuid4(), "c", True, now=0.5)  # per user
    assert limiter.allow(USER, "c", True, now=1.0)
    assert limiter.allow(USER, "c", False, now=0.6)
    limiter.relayed(USER, "c", False, now=0.6)
    assert not limiter.allow(USER, "c", False, now=0.7)  # stopped already
    assert limiter.allow(USER, "c", True, now=0.7)  # a start after a stop goes at once


def test_limiter_forgets_idle_entries() -> None:
    limiter = TypingLimiter(interval_s=1.0, forget_after_s=10.0)
    limiter.relayed(USER, "c", True, now=0.0)
    limiter.allow(USER, "d", True, now=100.0)
    assert len(limiter) == 0


class Reads:
    """The chat service's read of a conversation's members, counted."""

    def __init__(self, members: dict[str, list[str]]) -> None:
        self.members = members
        self.count = 0

    async def __call__(self, user: uuid.UUID, conversation_id: str) -> list[str]:
        self.count += 1
        ids = self.members.get(conversation_id, [])
        if str(user) not in ids:
            raise ChatCallError(grpc.StatusCode.PERMISSION_DENIED, "not_a_member", "no")
        return ids


async def test_members_are_read_once_then_cached_until_forgotten_or_stale() -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    reads = Reads({"c": [str(alice), str(bob)]})
    members = ConversationMembers(reads, ttl_s=30.0)
    assert await members.of(alice, "c", now=0.0) == {str(alice), str(bob)}
    assert await members.of(bob, "c", now=1.0) == {str(alice), str(bob)}
    assert reads.count == 1
    await members.of(alice, "c", now=31.0)
    assert reads.count == 2
    members.forget("c")
    await members.of(alice, "c", now=32.0)
    assert reads.count == 3


async def test_a_user_missing_from_the_cache_is_checked_again() -> None:
    alice, carol = uuid.uuid4(), uuid.uuid4()
    reads = Reads({"c": [str(alice)]})
    members = ConversationMembers(reads)
    await members.of(alice, "c", now=0.0)
    with pytest.raises(ChatCallError):
        await members.of(carol, "c", now=0.0)  # a non-member: refused by the chat service
    reads.members["c"].append(str(carol))  # joined, event not yet seen
    assert str(carol) in await members.of(carol, "c", now=0.0)


async def test_a_signal_reaches_the_recipients_devices_but_not_its_origin() -> None:
    hub = Hub(shards=2)
    alice, bob, eve = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    typing_device, other_device = connect(hub, alice), connect(hub, alice)
    bobs, outsider = connect(hub, bob), connect(hub, eve)
    relay = TypingRelay(redis=None, hub=hub, members=ConversationMembers(Reads({})))  # type: ignore[arg-type]
    signal = TypingSignal(
        "c", str(alice), True, str(typing_device[0].session_id), [str(alice), str(bob)]
    )
    assert relay.dispatch(msgspec.json.encode(signal)) == 2
    assert relay.dispatch(b"not a signal") == 0
    await asyncio.sleep(0.01)
    expected = [{"type": "typing", "conversation_id": "c", "user_id": str(alice), "typing": True}]
    assert other_device[1].frames == expected
    assert bobs[1].frames == expected
    assert typing_device[1].frames == []
    assert outsider[1].frames == []
    for conn, _ in [typing_device, other_device, bobs, outsider]:
        hub.unregister(conn)
        await conn.finish()
