"""Group commit on real PostgreSQL: one transaction per batch, yet every send its own outcome;
no seq gap or duplicate, order = acknowledgement order, and no deadlock between batches."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import asyncpg
import pytest

from realchat.chat.batch import assign_seqs
from realchat.chat.errors import IdempotencyConflict, NotFound, PermissionDenied
from realchat.chat.group_commit import GroupCommitLimits
from realchat.chat.service import ChatService, SendResult
from realchat.chat.store import ChatStore
from tests.integration.chat.conftest import OUTBOX_SHARDS
from tests.support.databases import new_users

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: One batch at a time and no linger: what queues behind the batch in flight is the next batch.
ONE_AT_A_TIME = GroupCommitLimits(max_batch=256, linger_s=60, max_inflight=1)


async def new_conversation(service: ChatService, members: list[uuid.UUID]) -> str:
    created = await service.create_conversation(members[0], [str(u) for u in members[1:]], "t")
    return str(created.conversation_id)


@asynccontextmanager
async def one_batch(
    pool: asyncpg.Pool, service: ChatService, blocker: tuple[uuid.UUID, str]
) -> AsyncIterator[None]:
    """Everything sent inside the block is written by one batch: a first send waits on its
    conversation's locked counter row, and the block's sends queue behind it."""
    sender, conversation = blocker
    async with pool.acquire() as holder:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(
            "SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", uuid.UUID(conversation)
        )
        blocked = asyncio.create_task(service.send_message(sender, conversation, "block", "b"))
        await asyncio.sleep(0.1)
        yield
        await asyncio.sleep(0.1)
        await transaction.rollback()
        await blocked


def outcomes(*sends: Awaitable[SendResult]) -> asyncio.Future[list[SendResult | BaseException]]:
    """The sends, started now; their results (or errors) once all are answered."""
    return asyncio.gather(*sends, return_exceptions=True)


async def xmins(pool: asyncpg.Pool, conversation: str) -> set[str]:
    rows = await pool.fetch(
        "SELECT xmin::text AS x FROM messages WHERE conversation_id = $1 AND idempotency_key "
        "<> 'block'",
        uuid.UUID(conversation),
    )
    return {r["x"] for r in rows}


async def test_failures_in_a_batch_stay_with_their_send(pool: asyncpg.Pool) -> None:
    service = ChatService(ChatStore(pool, OUTBOX_SHARDS), group_commit=ONE_AT_A_TIME)
    alice, bob, stranger = await new_users(pool, 3)
    room = await new_conversation(service, [alice, bob])
    lobby = await new_conversation(service, [alice])
    earlier = await service.send_message(alice, room, "earlier", "first words")
    async with one_batch(pool, service, (alice, lobby)):
        pending = outcomes(
            service.send_message(bob, room, "b1", "fine"),
            service.send_message(stranger, room, "s1", "not a member"),
            service.send_message(alice, room, "earlier", "other content"),  # conflict
            service.send_message(alice, room, "earlier", "first words"),  # replay
            service.send_message(alice, str(uuid.uuid4()), "nowhere", "no such room"),
            service.send_message(alice, room, "a2", "fine too"),
        )
    fine, outsider, conflict, replay, nowhere, fine_too = await pending
    assert isinstance(fine, SendResult)
    assert fine.created
    assert fine.message.seq == 2
    assert isinstance(outsider, PermissionDenied)
    assert isinstance(conflict, IdempotencyConflict)
    assert isinstance(replay, SendResult)
    assert not replay.created
    assert replay.message == earlier.message
    assert isinstance(nowhere, NotFound)
    assert isinstance(fine_too, SendResult)
    assert fine_too.message.seq == 3
    assert len(await xmins(pool, room)) == 2, "the earlier send, then one batch for the rest"
    seqs = await pool.fetch(
        "SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq", uuid.UUID(room)
    )
    assert [r["seq"] for r in seqs] == [1, 2, 3]
    assert (
        await pool.fetchval("SELECT last_seq FROM conversations WHERE id = $1", uuid.UUID(room))
        == 3
    )


async def test_a_replay_inside_one_batch_is_written_once_and_answered_twice(
    pool: asyncpg.Pool,
) -> None:
    service = ChatService(ChatStore(pool, OUTBOX_SHARDS), group_commit=ONE_AT_A_TIME)
    alice, bob = await new_users(pool, 2)
    room = await new_conversation(service, [alice, bob])
    async with one_batch(pool, service, (bob, await new_conversation(service, [bob]))):
        pending = outcomes(
            service.send_message(alice, room, "k", "hello"),
            service.send_message(alice, room, "k", "hello"),
            service.send_message(alice, room, "k", "hello, edited"),
        )
    first, again, edited = await pending
    assert isinstance(first, SendResult)
    assert isinstance(again, SendResult)
    assert (first.created, again.created) == (True, False)
    assert first.message == again.message
    assert isinstance(edited, IdempotencyConflict)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM messages WHERE conversation_id = $1", uuid.UUID(room)
        )
        == 1
    )
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE partition_key = $1", room) == 1


async def test_seqs_follow_arrival_order_per_conversation_within_a_batch(
    pool: asyncpg.Pool,
) -> None:
    service = ChatService(ChatStore(pool, OUTBOX_SHARDS), group_commit=ONE_AT_A_TIME)
    alice = uuid.uuid4()
    rooms = [await new_conversation(service, [alice]) for _ in range(3)]
    await service.send_message(alice, rooms[1], "before", "x")
    arrivals = [rooms[i] for i in (0, 1, 0, 2, 1, 1, 0)]
    async with one_batch(pool, service, (alice, await new_conversation(service, [alice]))):
        pending = outcomes(
            *(service.send_message(alice, r, f"m{n}", f"m{n}") for n, r in enumerate(arrivals))
        )
    results = await pending
    ids = [uuid.UUID(r) for r in arrivals]
    expected = assign_seqs(ids, {ids[1]: 1})
    assert [r.message.seq for r in results if isinstance(r, SendResult)] == expected
    # The outbox holds each conversation's events in seq order (ids taken in that order).
    for room in rooms:
        events = await pool.fetch(
            "SELECT convert_from(payload, 'UTF8')::jsonb ->> 'seq' AS seq FROM outbox "
            "WHERE partition_key = $1 ORDER BY id",
            room,
        )
        seqs = [int(e["seq"]) for e in events]
        assert seqs == sorted(seqs) == list(range(1, len(seqs) + 1))


async def test_two_replicas_racing_on_the_same_keys_and_rooms_store_each_once(
    pool: asyncpg.Pool,
) -> None:
    """Two services (two chat processes) on one database, many batches in flight each, the
    same keys sent through both: no deadlock, no duplicate, no gap, every caller answered with
    the one stored message."""
    limits = GroupCommitLimits(max_batch=16, linger_s=0.001, max_inflight=4)
    replicas = [ChatService(ChatStore(pool, OUTBOX_SHARDS), group_commit=limits) for _ in range(2)]
    users = await new_users(pool, 8)
    rooms = [await new_conversation(replicas[0], users) for _ in range(5)]

    async def send(replica: ChatService, n: int) -> SendResult:
        user = users[n % len(users)]
        return await replica.send_message(user, rooms[n % len(rooms)], f"key-{n}", f"c{n}")

    results = await asyncio.wait_for(
        asyncio.gather(*(send(replica, n) for n in range(300) for replica in replicas)), 60
    )
    by_key: dict[int, set[uuid.UUID]] = {}
    for i, result in enumerate(results):
        by_key.setdefault(i // 2, set()).add(result.message.message_id)
    assert all(len(ids) == 1 for ids in by_key.values())
    assert sum(r.created for r in results) == 300
    for room in rooms:
        seqs = await pool.fetch(
            "SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq", uuid.UUID(room)
        )
        assert [r["seq"] for r in seqs] == list(range(1, 61))
