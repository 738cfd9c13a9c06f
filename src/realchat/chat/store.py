"""The chat service's SQL: one function per transaction, nothing else.

The hot path, `insert_message`, is a single statement: it bumps the conversation's counter (the
row lock that serialises writers of this conversation only), inserts the message and its outbox
row, all atomically and in one round trip, so the lock is held as briefly as possible.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from realchat.chat.metrics import db_operation
from realchat.events.topics import MESSAGE_ACKNOWLEDGED, MESSAGE_CREATED
from realchat.observability.tracing import inject
from realchat.storage.outbox import outbox_shard


@dataclass(frozen=True)
class MessageRecord:
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    seq: int
    sender_id: uuid.UUID
    content: str
    created_at: datetime


@dataclass(frozen=True)
class ConversationRecord:
    conversation_id: uuid.UUID
    title: str
    member_ids: list[uuid.UUID]
    created_at: datetime
    last_seq: int
    #: The acknowledged cursor of the user the record was read for.
    acked_seq: int


@dataclass(frozen=True)
class Membership:
    """What the caller may do in a conversation: `exists` False means no such conversation."""

    exists: bool
    is_member: bool
    last_seq: int
    acked_seq: int


@dataclass(frozen=True)
class PresenceRecord:
    user_id: uuid.UUID
    status: str
    #: None for a user never seen online.
    since: datetime | None


class DuplicateIdempotencyKey(Exception):  # noqa: N818 - a signal to the service, not an error
    """A concurrent send with the same (sender, key) committed first."""


_MESSAGE_COLUMNS = "id, conversation_id, seq, sender_id, content, created_at"

_INSERT_MESSAGE = """
WITH bump AS (
    UPDATE conversations
       SET last_seq = last_seq + 1
     WHERE id = $1::uuid
       AND EXISTS (SELECT 1 FROM conversation_members
                    WHERE conversation_id = $1::uuid AND user_id = $2::uuid)
 RETURNING last_seq
), message AS (
    -- clock_timestamp(), not now(): taken under the row lock, so created_at follows seq.
    INSERT INTO messages (id, conversation_id, seq, sender_id, content, idempotency_key, created_at)
    SELECT gen_random_uuid(), $1::uuid, bump.last_seq, $2::uuid, $3::text, $4::text,
           clock_timestamp()
      FROM bump
 RETURNING id, conversation_id, seq, sender_id, content, created_at
), event AS (
    INSERT INTO outbox (shard, topic, event_type, partition_key, payload, trace_context)
    SELECT $5::int, $6::text, $6::text, $1::text,
           convert_to(jsonb_build_object(
               'event_id', gen_random_uuid(),
               'conversation_id', message.conversation_id,
               'seq', message.seq,
               'message_id', message.id,
               'sender_id', message.sender_id,
               'content', message.content,
               'created_at', message.created_at,
               'recipients', (SELECT coalesce(jsonb_agg(user_id ORDER BY user_id), '[]'::jsonb)
                                FROM conversation_members WHERE conversation_id = $1::uuid)
           )::text, 'UTF8'),
           $7::jsonb
      FROM message
 RETURNING id
)
SELECT message.* FROM message, event
"""

_ACK = """
WITH moved AS (
    UPDATE conversation_members
       SET acked_seq = $3::bigint
     WHERE conversation_id = $1::uuid AND user_id = $2::uuid AND acked_seq < $3::bigint
 RETURNING acked_seq, clock_timestamp() AS at
), event AS (
    INSERT INTO outbox (shard, topic, event_type, partition_key, payload, trace_context)
    SELECT $4::int, $5::text, $5::text, $1::text,
           convert_to(jsonb_build_object(
               'event_id', gen_random_uuid(),
               'conversation_id', $1::uuid,
               'user_id', $2::uuid,
               'seq', moved.acked_seq,
               'acknowledged_at', moved.at,
               'recipients', (SELECT coalesce(jsonb_agg(user_id ORDER BY user_id), '[]'::jsonb)
                                FROM conversation_members WHERE conversation_id = $1::uuid)
           )::text, 'UTF8'),
           $6::jsonb
      FROM moved
 RETURNING id
)
SELECT acked_seq FROM moved, event
"""

#: Conversations by id, as seen by user $2 (whose acked cursor is returned).
_CONVERSATION = """
SELECT c.id, c.title, c.created_at, c.last_seq,
       array_agg(m.user_id ORDER BY m.joined_at, m.user_id) AS member_ids,
       coalesce(max(m.acked_seq) FILTER (WHERE m.user_id = $2::uuid), 0) AS acked_seq
  FROM conversations c JOIN conversation_members m ON m.conversation_id = c.id
 WHERE c.id = ANY($1::uuid[])
 GROUP BY c.id
 ORDER BY c.created_at, c.id
"""


def _message(row: asyncpg.Record) -> MessageRecord:
    return MessageRecord(
        message_id=row["id"],
        conversation_id=row["conversation_id"],
        seq=row["seq"],
        sender_id=row["sender_id"],
        content=row["content"],
        created_at=row["created_at"],
    )


def _conversation(row: asyncpg.Record) -> ConversationRecord:
    return ConversationRecord(
        conversation_id=row["id"],
        title=row["title"],
        member_ids=list(row["member_ids"]),
        created_at=row["created_at"],
        last_seq=row["last_seq"],
        acked_seq=row["acked_seq"],
    )


#: The presence of those of $2 who are $1 or share a conversation with $1 (a read of the presence
#: service's announced state).
_VISIBLE_PRESENCE = """
SELECT asked.id AS user_id, coalesce(p.status, 'offline') AS status, p.changed_at AS since
  FROM unnest($2::uuid[]) AS asked(id)
  LEFT JOIN presence p ON p.user_id = asked.id
 WHERE asked.id = $1::uuid
    OR EXISTS (SELECT 1
                 FROM conversation_members mine
                 JOIN conversation_members theirs
                   ON theirs.conversation_id = mine.conversation_id
                WHERE mine.user_id = $1::uuid AND theirs.user_id = asked.id)
 ORDER BY asked.id
"""


class ChatStore:
    def __init__(self, pool: asyncpg.Pool, outbox_shards: int) -> None:
        self._pool = pool
        self._shards = outbox_shards

    @db_operation("create_conversation")
    async def create_conversation(
        self, creator: uuid.UUID, member_ids: list[uuid.UUID], title: str
    ) -> ConversationRecord:
        conversation_id = uuid.uuid4()
        members = [creator, *(m for m in dict.fromkeys(member_ids) if m != creator)]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO conversations (id, title, created_by) VALUES ($1, $2, $3)",
                conversation_id,
                title,
                creator,
            )
            await conn.executemany(
                "INSERT INTO conversation_members (conversation_id, user_id, joined_at) "
                "VALUES ($1, $2, clock_timestamp())",
                [(conversation_id, m) for m in members],
            )
            row = await conn.fetchrow(_CONVERSATION, [conversation_id], creator)
        assert row is not None
        return _conversation(row)

    @db_operation("add_members")
    async def add_members(
        self, conversation_id: uuid.UUID, actor: uuid.UUID, user_ids: list[uuid.UUID]
    ) -> ConversationRecord:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO conversation_members (conversation_id, user_id, joined_at) "
                "VALUES ($1, $2, clock_timestamp()) ON CONFLICT DO NOTHING",
                [(conversation_id, u) for u in dict.fromkeys(user_ids)],
            )
            row = await conn.fetchrow(_CONVERSATION, [conversation_id], actor)
        assert row is not None
        return _conversation(row)

    @db_operation("get_conversation")
    async def get_conversation(
        self, conversation_id: uuid.UUID, viewer: uuid.UUID
    ) -> ConversationRecord | None:
        row = await self._pool.fetchrow(_CONVERSATION, [conversation_id], viewer)
        return _conversation(row) if row is not None else None

    @db_operation("list_conversations")
    async def list_conversations(self, user_id: uuid.UUID) -> list[ConversationRecord]:
        ids = await self._pool.fetch(
            "SELECT conversation_id FROM conversation_members WHERE user_id = $1", user_id
        )
        rows = await self._pool.fetch(_CONVERSATION, [r["conversation_id"] for r in ids], user_id)
        return [_conversation(r) for r in rows]

    @db_operation("membership")
    async def membership(self, conversation_id: uuid.UUID, user_id: uuid.UUID) -> Membership:
        row = await self._pool.fetchrow(
            """SELECT c.last_seq, m.acked_seq
                 FROM conversations c
                 LEFT JOIN conversation_members m
                   ON m.conversation_id = c.id AND m.user_id = $2
                WHERE c.id = $1""",
            conversation_id,
            user_id,
        )
        if row is None:
            return Membership(exists=False, is_member=False, last_seq=0, acked_seq=0)
        return Membership(
            exists=True,
            is_member=row["acked_seq"] is not None,
            last_seq=row["last_seq"],
            acked_seq=row["acked_seq"] or 0,
        )

    @db_operation("find_sent")
    async def find_sent(self, sender_id: uuid.UUID, idempotency_key: str) -> MessageRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages "
            "WHERE sender_id = $1 AND idempotency_key = $2",
            sender_id,
            idempotency_key,
        )
        return _message(row) if row is not None else None

    @db_operation("insert_message")
    async def insert_message(
        self,
        conversation_id: uuid.UUID,
        sender_id: uuid.UUID,
        idempotency_key: str,
        content: str,
        trace_context: dict[str, str],
    ) -> MessageRecord | None:
        """The message with its seq and outbox row; None if the sender is not a member (or the
        conversation does not exist): then nothing was written."""
        try:
            row = await self._pool.fetchrow(
                _INSERT_MESSAGE,
                conversation_id,
                sender_id,
                content,
                idempotency_key,
                outbox_shard(conversation_id, self._shards),
                MESSAGE_CREATED,
                # The outbox row carries this span's context: the publisher continues the trace.
                _json(trace_context or inject()),
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "messages_sender_idempotency_key":
                raise DuplicateIdempotencyKey from exc
            raise
        return _message(row) if row is not None else None

    @db_operation("history")
    async def history(
        self, conversation_id: uuid.UUID, after_seq: int, limit: int
    ) -> list[MessageRecord]:
        rows = await self._pool.fetch(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages "
            "WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            conversation_id,
            after_seq,
            limit,
        )
        return [_message(r) for r in rows]

    @db_operation("ack")
    async def ack(
        self,
        conversation_id: uuid.UUID,
        user_id: uuid.UUID,
        seq: int,
        trace_context: dict[str, str],
    ) -> int | None:
        """Move the cursor forward to `seq` and announce it; None if it was already there."""
        result: int | None = await self._pool.fetchval(
            _ACK,
            conversation_id,
            user_id,
            seq,
            outbox_shard(conversation_id, self._shards),
            MESSAGE_ACKNOWLEDGED,
            _json(trace_context or inject()),
        )
        return result

    @db_operation("visible_presence")
    async def visible_presence(
        self, viewer: uuid.UUID, user_ids: list[uuid.UUID]
    ) -> list[PresenceRecord]:
        rows = await self._pool.fetch(_VISIBLE_PRESENCE, viewer, list(dict.fromkeys(user_ids)))
        return [PresenceRecord(r["user_id"], r["status"], r["since"]) for r in rows]


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))
