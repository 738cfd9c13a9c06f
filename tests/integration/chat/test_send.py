"""The write engine against real PostgreSQL: gapless per-conversation seqs, idempotent sends,
bad input that changes nothing."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from realchat.chat.errors import IdempotencyConflict, InvalidArgument, NotFound, PermissionDenied
from realchat.chat.service import ChatService
from realchat.events.models import MessageAcknowledged, MessageCreated, decode
from realchat.events.topics import MESSAGE_ACKNOWLEDGED, MESSAGE_CREATED
from realchat.outbox.store import pending_batch
from tests.support.databases import new_users

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def new_conversation(
    service: ChatService, pool: asyncpg.Pool, members: int
) -> tuple[str, list[uuid.UUID]]:
    users = await new_users(pool, members)
    conversation = await service.create_conversation(users[0], [str(u) for u in users[1:]], "t")
    return str(conversation.conversation_id), users


async def test_concurrent_senders_get_exactly_seqs_1_to_200(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    conversation, senders = await new_conversation(service, pool, 20)

    async def send(sender: uuid.UUID, n: int) -> int:
        result = await service.send_message(sender, conversation, f"{sender}-{n}", f"m{n}")
        return result.message.seq

    seqs = await asyncio.gather(*(send(s, n) for s in senders for n in range(10)))
    assert sorted(seqs) == list(range(1, 201))
    rows = await pool.fetch(
        "SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq", uuid.UUID(conversation)
    )
    assert [r["seq"] for r in rows] == list(range(1, 201))
    # One outbox event per message, and in outbox (commit) order the seqs strictly increase.
    events = await pool.fetch(
        "SELECT payload FROM outbox WHERE partition_key = $1 AND topic = $2 ORDER BY id",
        conversation,
        MESSAGE_CREATED,
    )
    assert [json.loads(bytes(e["payload"]))["seq"] for e in events] == list(range(1, 201))
    last_seq = await pool.fetchval(
        "SELECT last_seq FROM conversations WHERE id = $1", uuid.UUID(conversation)
    )
    assert last_seq == 200


async def test_outbox_event_carries_the_message_and_gets_its_recipients_when_published(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    conversation, users = await new_conversation(service, pool, 3)
    sent = await service.send_message(
        users[1],
        conversation,
        "k1",
        'héllo ✓ "recipients": []',
        {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
    )
    row = await pool.fetchrow(
        "SELECT topic, event_type, partition_key, payload, trace_context, shard FROM outbox"
    )
    assert row is not None
    assert row["topic"] == row["event_type"] == MESSAGE_CREATED
    assert row["partition_key"] == conversation
    assert "traceparent" in row["trace_context"]
    assert "recipients" not in json.loads(bytes(row["payload"]))  # the publisher adds them
    async with pool.acquire() as conn:
        (published,) = await pending_batch(conn, row["shard"], 10)  # as the publisher reads it
    event = decode(MESSAGE_CREATED, published.payload)
    assert isinstance(event, MessageCreated)
    assert event.message_id == sent.message.message_id
    assert (event.seq, event.content, event.sender_id) == (1, 'héllo ✓ "recipients": []', users[1])
    assert event.created_at == sent.message.created_at
    assert sorted(event.recipients) == sorted(users)


async def test_same_key_from_ten_concurrent_callers_writes_one_message(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    conversation, (sender, *_) = await new_conversation(service, pool, 2)
    results = await asyncio.gather(
        *(service.send_message(sender, conversation, "same-key", "hello") for _ in range(10))
    )
    assert len({r.message.message_id for r in results}) == 1
    assert {r.message.seq for r in results} == {1}
    assert sum(r.created for r in results) == 1
    assert await pool.fetchval("SELECT count(*) FROM messages") == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1
    assert await pool.fetchval("SELECT last_seq FROM conversations") == 1


async def test_reused_key_with_other_content_or_conversation_is_a_conflict(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    conversation, (sender, *_) = await new_conversation(service, pool, 2)
    other = await service.create_conversation(sender, [], "other")
    await service.send_message(sender, conversation, "k", "hello")
    with pytest.raises(IdempotencyConflict) as conflict:
        await service.send_message(sender, conversation, "k", "something else")
    assert conflict.value.code == "idempotency_conflict"
    with pytest.raises(IdempotencyConflict):
        await service.send_message(sender, str(other.conversation_id), "k", "hello")
    assert await pool.fetchval("SELECT count(*) FROM messages") == 1
    assert await pool.fetchval("SELECT max(last_seq) FROM conversations") == 1


async def test_idempotency_keys_are_scoped_to_the_sender(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    conversation, (alice, bob) = await new_conversation(service, pool, 2)
    first = await service.send_message(alice, conversation, "shared-key", "from alice")
    second = await service.send_message(bob, conversation, "shared-key", "from bob")
    assert (first.created, second.created) == (True, True)
    assert (first.message.seq, second.message.seq) == (1, 2)


@pytest.mark.parametrize(
    ("conversation_id", "client_msg_id", "content", "code"),
    [
        ("not-a-uuid", "k", "x", "invalid_conversation_id"),
        (None, "", "x", "invalid_client_msg_id"),
        (None, "k" * 65, "x", "invalid_client_msg_id"),
        (None, "k", "", "invalid_content"),
        (None, "k", "x" * 4001, "invalid_content"),
        (None, "k", "nul\x00byte", "invalid_content"),
    ],
)
async def test_bad_input_is_rejected_and_changes_nothing(
    service: ChatService,
    pool: asyncpg.Pool,
    conversation_id: str | None,
    client_msg_id: str,
    content: str,
    code: str,
) -> None:
    conversation, (sender, *_) = await new_conversation(service, pool, 2)
    with pytest.raises(InvalidArgument) as error:
        await service.send_message(sender, conversation_id or conversation, client_msg_id, content)
    assert error.value.code == code
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    assert await pool.fetchval("SELECT max(last_seq) FROM conversations") == 0


async def test_content_of_exactly_4000_characters_is_accepted(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    conversation, (sender, *_) = await new_conversation(service, pool, 1)
    sent = await service.send_message(sender, conversation, "k", "é" * 4000)
    assert len(sent.message.content) == 4000


async def test_outsiders_can_neither_send_nor_read(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    conversation, (member, *_) = await new_conversation(service, pool, 2)
    outsider = uuid.uuid4()
    with pytest.raises(PermissionDenied):
        await service.send_message(outsider, conversation, "k", "intrusion")
    with pytest.raises(PermissionDenied):
        await service.history(outsider, conversation, 0, 10)
    with pytest.raises(PermissionDenied):
        await service.ack(outsider, conversation, 0)
    with pytest.raises(PermissionDenied):
        await service.add_members(outsider, conversation, [str(outsider)])
    with pytest.raises(NotFound):
        await service.send_message(member, str(uuid.uuid4()), "k", "nowhere")
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0
    assert await pool.fetchval("SELECT last_seq FROM conversations") == 0
    assert outsider not in (await service.get_conversation(member, conversation)).member_ids


async def test_history_pages_in_seq_order(service: ChatService, pool: asyncpg.Pool) -> None:
    conversation, (sender, reader) = await new_conversation(service, pool, 2)
    for n in range(1, 8):
        await service.send_message(sender, conversation, f"k{n}", f"m{n}")
    page, last_seq = await service.history(reader, conversation, after_seq=2, limit=3)
    assert [m.seq for m in page] == [3, 4, 5]
    assert last_seq == 7
    rest, _ = await service.history(reader, conversation, after_seq=5, limit=0)
    assert [m.content for m in rest] == ["m6", "m7"]
    with pytest.raises(InvalidArgument, match="limit"):
        await service.history(reader, conversation, after_seq=0, limit=501)
    with pytest.raises(InvalidArgument, match="after_seq"):
        await service.history(reader, conversation, after_seq=-1, limit=10)


async def test_ack_only_moves_forward_and_is_announced(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    conversation, (sender, reader) = await new_conversation(service, pool, 2)
    for n in range(3):
        await service.send_message(sender, conversation, f"k{n}", "m")
    assert await service.ack(reader, conversation, 2) == 2
    assert await service.ack(reader, conversation, 1) == 2  # never backwards
    (listed,) = (await service.list_conversations(reader)).conversations
    assert (listed.acked_seq, listed.last_seq) == (2, 3)  # the reader's own cursor
    with pytest.raises(InvalidArgument, match="last seq"):
        await service.ack(reader, conversation, 4)
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE topic = $1 ORDER BY id", MESSAGE_ACKNOWLEDGED
    )
    assert len(rows) == 1  # the no-op ack announced nothing
    event = decode(MESSAGE_ACKNOWLEDGED, bytes(rows[0]["payload"]))
    assert isinstance(event, MessageAcknowledged)
    assert (event.user_id, event.seq, event.recipients) == (reader, 2, sorted([sender, reader]))


async def test_members_and_listing(service: ChatService, pool: asyncpg.Pool) -> None:
    alice, bob, carol = await new_users(pool, 3)
    created = await service.create_conversation(alice, [str(bob), str(bob), str(alice)], "")
    assert created.member_ids == [alice, bob]  # creator first, duplicates folded
    assert created.last_seq == 0
    added = await service.add_members(bob, str(created.conversation_id), [str(carol)])
    assert set(added.member_ids) == {alice, bob, carol}
    listed = await service.list_conversations(carol)
    assert [c.conversation_id for c in listed.conversations] == [created.conversation_id]
    assert listed.next_page_token is None
    assert (await service.list_conversations(uuid.uuid4())).conversations == []
    with pytest.raises(InvalidArgument):
        await service.create_conversation(alice, ["nope"], "")


async def test_a_locked_conversation_does_not_hold_up_sends_to_another(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    """Sends serialise per conversation only: the counter row is the one lock a send takes."""
    busy, busy_users = await new_conversation(service, pool, 2)
    free, free_users = await new_conversation(service, pool, 2)
    await service.send_message(busy_users[0], busy, "before", "before the lock")
    async with pool.acquire() as holder, holder.transaction():
        # Another writer holds the busy conversation's counter row, as a long send would.
        await holder.execute(
            "SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", uuid.UUID(busy)
        )
        waiting = asyncio.create_task(service.send_message(busy_users[1], busy, "w", "waits"))
        sent = await asyncio.wait_for(service.send_message(free_users[0], free, "f", "free"), 10)
        assert sent.message.seq == 1
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        assert not done, "a send went through a conversation whose counter row is locked"
    assert (await asyncio.wait_for(waiting, 10)).message.seq == 2


async def test_the_schema_refuses_a_second_message_at_the_same_seq(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    """The backstop under the counter: even a writer that bypassed it cannot reuse a seq."""
    conversation, users = await new_conversation(service, pool, 1)
    await service.send_message(users[0], conversation, "first", "one")
    with pytest.raises(asyncpg.UniqueViolationError) as refused:
        await pool.execute(
            """INSERT INTO messages (id, conversation_id, seq, sender_id, content,
                                     idempotency_key, created_at)
               VALUES (gen_random_uuid(), $1, 1, $2, 'again', 'other-key', now())""",
            uuid.UUID(conversation),
            users[0],
        )
    assert refused.value.constraint_name == "messages_conversation_seq_key"
