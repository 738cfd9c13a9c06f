"""Recipients added at publish time, against real PostgreSQL: the batch the publisher reads."""

from __future__ import annotations

import json

import asyncpg
import pytest

from realchat.chat.service import ChatService
from realchat.events.topics import MESSAGE_ACKNOWLEDGED, MESSAGE_CREATED
from realchat.outbox.store import pending_batch
from tests.support.databases import new_users

pytestmark = pytest.mark.asyncio(loop_scope="session")

SHARD = 3


async def _raw_event(
    pool: asyncpg.Pool, event_type: str, key: str, payload: dict[str, object]
) -> None:
    await pool.execute(
        "INSERT INTO outbox (shard, topic, event_type, partition_key, payload) "
        "VALUES ($1, $2, $2, $3, $4)",
        SHARD,
        event_type,
        key,
        json.dumps(payload).encode(),
    )


async def test_each_message_event_of_a_batch_gets_its_own_conversations_members(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    rooms = []
    for size in (2, 3):
        users = await new_users(pool, size)
        room = await service.create_conversation(users[0], [str(u) for u in users[1:]], "")
        rooms.append((str(room.conversation_id), sorted(str(u) for u in users)))
    for n, (room, _) in enumerate(rooms * 2):
        await _raw_event(pool, MESSAGE_CREATED, room, {"seq": n})
    older = {"seq": 9, "recipients": ["kept-as-written"]}
    await _raw_event(pool, MESSAGE_CREATED, rooms[0][0], older)
    await _raw_event(pool, MESSAGE_CREATED, "not-a-conversation-id", {"seq": 10})
    await _raw_event(pool, MESSAGE_ACKNOWLEDGED, rooms[0][0], {"seq": 11, "recipients": []})
    async with pool.acquire() as conn, conn.transaction():
        events = await pending_batch(conn, SHARD, 100)
    published = [json.loads(e.payload) for e in events]
    assert [p["seq"] for p in published] == [0, 1, 2, 3, 9, 10, 11], "in id order"
    expected = [members for _, members in rooms * 2]
    assert [sorted(p["recipients"]) for p in published[:4]] == expected
    assert published[4]["recipients"] == ["kept-as-written"], "an event that has them keeps them"
    assert published[5]["recipients"] == [], "a malformed key fails nothing, reaches no one"
    assert events[6].payload == json.dumps({"seq": 11, "recipients": []}).encode()
