"""Unread counts against a model: random sends by three users into two conversations, random acks
(forward, backward, repeated) from several devices of each; after each round every user's
conversation list gives, per conversation, the last seq, the user's read position (the highest
seq any of their devices acknowledged) and the number of messages after it that others sent.
The acker's other devices hear their new read position (`read` frames)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import aiohttp
import pytest

from tests.e2e.conftest import RealChat
from tests.support.client import Device, User, connect, create_conversation, register, send_rest

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROUNDS = 8
STEPS_PER_ROUND = 12
#: Liveness bound for an ack sent over a WebSocket (no reply) to show in the list.
SETTLE_S = 30.0


@dataclass
class Model:
    """Messages (their senders, by seq) and each user's read position, per conversation."""

    senders: dict[str, list[str]] = field(default_factory=dict)
    read: dict[tuple[str, str], int] = field(default_factory=dict)

    def send(self, conversation: str, sender: str) -> int:
        self.senders.setdefault(conversation, []).append(sender)
        return len(self.senders[conversation])

    def ack(self, conversation: str, user: str, seq: int) -> bool:
        """True if the position moved."""
        before = self.read.get((conversation, user), 0)
        self.read[(conversation, user)] = max(before, seq)
        return seq > before

    def view(self, conversation: str, user: str) -> tuple[int, int, int]:
        senders = self.senders.get(conversation, [])
        position = self.read.get((conversation, user), 0)
        unread = sum(1 for sender in senders[position:] if sender != user)
        return len(senders), position, unread


async def listed(
    http: aiohttp.ClientSession, base: str, user: User
) -> dict[str, tuple[int, int, int]]:
    async with http.get(f"{base}/v1/conversations", headers=user.auth) as reply:
        assert reply.status == 200, await reply.text()
        body = await reply.json()
    return {
        c["conversation_id"]: (c["last_seq"], c["acked_seq"], c["unread_count"])
        for c in body["conversations"]
    }


async def settled(
    http: aiohttp.ClientSession, base: str, user: User, want: dict[str, tuple[int, int, int]]
) -> dict[str, tuple[int, int, int]]:
    """The user's list once it matches (acks over a WebSocket have no reply), or the last one
    seen when the bound passes."""
    seen = await listed(http, base, user)
    try:
        async with asyncio.timeout(SETTLE_S):
            while seen != want:
                await asyncio.sleep(0.05)
                seen = await listed(http, base, user)
    except TimeoutError:
        pass
    return seen


def reads(device: Device, conversation: str) -> list[int]:
    return [f["seq"] for f in device.of_type("read") if f["conversation_id"] == conversation]


async def test_unread_counts_match_a_model_under_random_sends_and_acks(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    rng = random.Random(23)
    users = [await register(http, base, name) for name in ("alice", "bob", "carol")]
    alice, bob, carol = users
    conversations = [
        await create_conversation(http, base, alice, bob, carol),
        await create_conversation(http, base, bob, alice),
    ]
    members = {conversations[0]: users, conversations[1]: [alice, bob]}
    devices = {u.user_id: [await connect(http, base, u) for _ in range(2)] for u in users}
    model = Model()
    for _ in range(ROUNDS):
        for _ in range(STEPS_PER_ROUND):
            conversation = rng.choice(conversations)
            user = rng.choice(members[conversation])
            last = len(model.senders.get(conversation, []))
            if last == 0 or rng.random() < 0.5:
                message = await send_rest(http, base, user, conversation, "m")
                assert message["seq"] == model.send(conversation, user.user_id)
            else:
                seq = rng.randint(0, last)
                device = rng.choice(devices[user.user_id])
                await device.send({"type": "ack", "conversation_id": conversation, "seq": seq})
                model.ack(conversation, user.user_id, seq)
        for user in users:
            want = {c: model.view(c, user.user_id) for c in conversations if user in members[c]}
            assert await settled(http, base, user, want) == want
    # Every device of a user heard each move of their read position, in order.
    for user in users:
        for conversation in conversations:
            if user not in members[conversation]:
                continue
            position = model.read.get((conversation, user.user_id), 0)
            for device in devices[user.user_id]:
                if position:
                    await device.wait(lambda d, c=conversation, p=position: p in reads(d, c))
                moves = reads(device, conversation)
                assert moves == sorted(moves)  # never backwards (a redelivery may repeat)
    for device in [d for ds in devices.values() for d in ds]:
        assert device.of_type("error") == []
        await device.close()
