"""Membership with consent and an exit, against real PostgreSQL: members are real accounts, a
conversation has a total cap, members leave and creators remove, blocks keep people out and
hide presence both ways, and conversation lists come a bounded page at a time."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from realchat.chat.errors import InvalidArgument, NotFound, PermissionDenied
from realchat.chat.service import ChatService
from realchat.chat.store import ChatStore
from realchat.events.models import MembershipChanged, MessageCreated, decode
from realchat.events.topics import MEMBERSHIP_CHANGED, MESSAGE_CREATED
from realchat.outbox.store import pending_batch
from tests.integration.chat.conftest import OUTBOX_SHARDS
from tests.support.databases import new_users

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def events(pool: asyncpg.Pool, topic: str, conversation: str) -> list[object]:
    """The conversation's pending events of `topic` as the publisher would publish them now
    (message events get their recipients at publish time)."""
    async with pool.acquire() as conn, conn.transaction():
        shards = [await pending_batch(conn, shard, 1000) for shard in range(OUTBOX_SHARDS)]
    return [
        decode(topic, e.payload)
        for pending in shards
        for e in pending
        if e.topic == topic and e.partition_key == conversation
    ]


async def online(pool: asyncpg.Pool, *users: uuid.UUID) -> None:
    await pool.executemany(
        "INSERT INTO presence (user_id, status) VALUES ($1, 'online')", [(u,) for u in users]
    )


async def test_made_up_member_ids_are_refused_and_nothing_is_created(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    (alice, bob) = await new_users(pool, 2)
    made_up = [str(uuid.uuid4()) for _ in range(7)]
    with pytest.raises(InvalidArgument) as refused:
        await service.create_conversation(alice, [str(bob), *made_up], "")
    assert refused.value.code == "unknown_users"
    assert made_up[0] in refused.value.message
    assert "and 2 more" in refused.value.message
    assert await pool.fetchval("SELECT count(*) FROM conversations") == 0
    room = await service.create_conversation(alice, [str(bob)], "")
    with pytest.raises(InvalidArgument) as refused:
        await service.add_members(bob, str(room.conversation_id), made_up[:1])
    assert refused.value.code == "unknown_users"
    assert (await service.get_conversation(alice, str(room.conversation_id))).member_ids == [
        alice,
        bob,
    ]


async def test_the_member_cap_counts_everyone_in_the_conversation(pool: asyncpg.Pool) -> None:
    service = ChatService(ChatStore(pool, OUTBOX_SHARDS), max_members=3)
    alice, bob, carol, dave = await new_users(pool, 4)
    with pytest.raises(InvalidArgument) as refused:
        await service.create_conversation(alice, [str(bob), str(carol), str(dave)], "")
    assert refused.value.code == "too_many_members"
    room = await service.create_conversation(alice, [str(bob)], "")
    cid = str(room.conversation_id)
    await service.add_members(alice, cid, [str(carol), str(bob)])  # bob is in already
    with pytest.raises(InvalidArgument) as refused:
        await service.add_members(bob, cid, [str(dave)])  # one request at a time adds up
    assert refused.value.code == "too_many_members"
    await service.remove_member(carol, cid, str(carol))
    assert len((await service.add_members(bob, cid, [str(dave)])).member_ids) == 3


async def test_a_member_who_leaves_gets_nothing_written_after(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    alice, bob = await new_users(pool, 2)
    room = await service.create_conversation(alice, [str(bob)], "")
    cid = str(room.conversation_id)
    await service.send_message(alice, cid, "before", "before the leave")
    assert await service.remove_member(bob, cid, str(bob)) == "left"
    await service.send_message(alice, cid, "after", "after the leave")
    for call in (
        service.history(bob, cid, 0, 10),
        service.send_message(bob, cid, "bob-after", "still here?"),
        service.ack(bob, cid, 1),
        service.get_conversation(bob, cid),
    ):
        with pytest.raises(PermissionDenied):
            await call
    assert [c.conversation_id for c in (await service.list_conversations(bob)).conversations] == []
    messages = await events(pool, MESSAGE_CREATED, cid)
    assert all(isinstance(m, MessageCreated) for m in messages)
    # Recipients are the members when an event is published: both messages are still pending,
    # so neither reaches bob live, the one written before the leave included (he left it).
    assert [m.recipients for m in messages if isinstance(m, MessageCreated)] == [[alice], [alice]]
    (left,) = await events(pool, MEMBERSHIP_CHANGED, cid)
    assert isinstance(left, MembershipChanged)
    assert (left.change, left.user_ids, left.by, left.seq) == ("left", [bob], bob, 1)
    assert sorted(left.recipients) == sorted([alice, bob])  # the leaver is told too


async def test_only_the_creator_removes_others(service: ChatService, pool: asyncpg.Pool) -> None:
    alice, bob, carol = await new_users(pool, 3)
    room = await service.create_conversation(alice, [str(bob), str(carol)], "")
    cid = str(room.conversation_id)
    with pytest.raises(PermissionDenied) as refused:
        await service.remove_member(bob, cid, str(carol))
    assert refused.value.code == "not_the_creator"
    assert await service.remove_member(alice, cid, str(carol)) == "removed"
    with pytest.raises(NotFound) as refused:
        await service.remove_member(alice, cid, str(carol))
    assert refused.value.code == "member_not_found"
    with pytest.raises(PermissionDenied):
        await service.remove_member(carol, cid, str(bob))
    with pytest.raises(NotFound):
        await service.remove_member(alice, str(uuid.uuid4()), str(bob))
    assert (await service.get_conversation(bob, cid)).member_ids == [alice, bob]


async def test_a_blocked_user_cannot_add_the_blocker_and_neither_sees_the_other(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    victim, mallory, friend = await new_users(pool, 3)
    await online(pool, victim, mallory, friend)
    shared = await service.create_conversation(mallory, [str(victim), str(friend)], "")
    seen = await service.presence(mallory, [str(victim)])
    assert [p.user_id for p in seen] == [victim]  # co-members see each other

    await service.block(victim, str(mallory))
    assert await service.blocked_users(victim) == [mallory]
    assert await service.presence(mallory, [str(victim)]) == []
    assert await service.presence(victim, [str(mallory)]) == []
    assert [p.user_id for p in await service.presence(friend, [str(victim), str(mallory)])] == (
        sorted([victim, mallory])
    )
    for attempt in (
        service.create_conversation(mallory, [str(victim)], ""),
        service.add_members(mallory, str(shared.conversation_id), [str(victim)]),
    ):
        with pytest.raises(PermissionDenied) as refused:
            await attempt
        assert refused.value.code == "blocked"
    with pytest.raises(PermissionDenied):  # nor the blocker the blocked, while the block holds
        await service.create_conversation(victim, [str(mallory)], "")
    # Presence events: the presence service's audience leaves the pair out as well.
    peers = await pool.fetch("SELECT presence_peers($1) AS p", victim)
    assert {r["p"] for r in peers} == {friend}

    await service.unblock(victim, str(mallory))
    assert await service.blocked_users(victim) == []
    assert [p.user_id for p in await service.presence(mallory, [str(victim)])] == [victim]


async def test_blocking_needs_a_real_user_and_not_oneself(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    (alice,) = await new_users(pool, 1)
    with pytest.raises(NotFound):
        await service.block(alice, str(uuid.uuid4()))
    with pytest.raises(InvalidArgument):
        await service.block(alice, str(alice))


async def test_presence_is_gone_once_the_only_shared_conversation_is_left(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    mallory, victim = await new_users(pool, 2)
    await online(pool, victim)
    forced = await service.create_conversation(mallory, [str(victim)], "")
    assert [p.user_id for p in await service.presence(mallory, [str(victim)])] == [victim]
    await service.remove_member(victim, str(forced.conversation_id), str(victim))
    assert await service.presence(mallory, [str(victim)]) == []


async def test_conversations_come_a_page_at_a_time(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    (alice,) = await new_users(pool, 1)
    created = {(await service.create_conversation(alice, [], "")).conversation_id for _ in range(5)}
    seen: list[uuid.UUID] = []
    token = ""
    pages = 0
    while True:
        page = await service.list_conversations(alice, 2, token)
        pages += 1
        assert len(page.conversations) <= 2
        seen.extend(c.conversation_id for c in page.conversations)
        if page.next_page_token is None:
            break
        token = page.next_page_token
    assert pages == 3
    assert seen == sorted(created)
    for bad in ({"page_size": 201}, {"page_size": -1}, {"page_token": "nonsense"}):
        with pytest.raises(InvalidArgument):
            await service.list_conversations(alice, **bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            await service.list_positions(alice, **bad)  # type: ignore[arg-type]


async def test_positions_are_the_conversations_counters_a_page_at_a_time(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    """What a sync starts from, read without members or unread counts: the same pages, and
    each position agrees with the conversation as listed (acked seq, last seq, changes)."""
    alice, bob = await new_users(pool, 2)
    conversations = [await service.create_conversation(alice, [str(bob)], "") for _ in range(3)]
    first, second = (str(c.conversation_id) for c in conversations[:2])
    for n in range(3):
        await service.send_message(alice, first, f"k{n}", f"m{n}")
    sent = await service.send_message(alice, second, "k-edit", "before")
    await service.edit_message(alice, second, sent.message.seq, "change-1", "after")
    await service.ack(bob, first, 2)
    positions = []
    token = ""
    while True:
        page = await service.list_positions(bob, 2, token)
        assert len(page.positions) <= 2
        positions.extend(page.positions)
        if page.next_page_token is None:
            break
        token = page.next_page_token
    listed = (await service.list_conversations(bob)).conversations
    assert [(p.conversation_id, p.acked_seq, p.last_seq, p.last_change) for p in positions] == [
        (c.conversation_id, c.acked_seq, c.last_seq, c.last_change) for c in listed
    ]
    by_id = {p.conversation_id: p for p in positions}
    assert (by_id[uuid.UUID(first)].acked_seq, by_id[uuid.UUID(first)].last_seq) == (2, 3)
    assert by_id[uuid.UUID(second)].last_change == 1
    assert (await service.list_positions(uuid.uuid4())).positions == []
