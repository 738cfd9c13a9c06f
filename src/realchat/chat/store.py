"""The chat service's SQL: one function per transaction, nothing else.

The hot path, `insert_messages`, writes a whole batch of sends (group commit) in a single
statement: it bumps each conversation's counter once (the row lock that serialises writers of
that conversation only), inserts the messages and their outbox rows, all atomically and in one
round trip, so the locks are held as briefly as possible and one commit (one WAL flush) covers
the batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from realchat.chat.batch import Created, Existing, NewMessage, Refused, Stored
from realchat.chat.metrics import db_operation
from realchat.contract.limits import MAX_UNREAD_COUNTED
from realchat.events.topics import MESSAGE_ACKNOWLEDGED, MESSAGE_CREATED
from realchat.observability.tracing import inject
from realchat.outbox.wakeup import CHANNEL as WAKEUP_CHANNEL
from realchat.outbox.writer import outbox_shard, trace_context_json


@dataclass(frozen=True)
class MessageRecord:
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    seq: int
    sender_id: uuid.UUID
    content: str
    created_at: datetime
    #: 1 when sent, +1 per edit or delete.
    version: int = 1
    edited_at: datetime | None = None
    #: A tombstone: deleted by its sender, `content` empty, `seq` kept.
    deleted: bool = False


@dataclass(frozen=True)
class ConversationRecord:
    conversation_id: uuid.UUID
    title: str
    member_ids: list[uuid.UUID]
    created_at: datetime
    last_seq: int
    #: The acknowledged cursor of the user the record was read for.
    acked_seq: int
    #: Messages after that cursor sent by others and not deleted (at most MAX_UNREAD_COUNTED).
    unread_count: int = 0
    #: The conversation's change counter (edits and deletes so far).
    last_change: int = 0


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


MESSAGE_COLUMNS = (
    "id, conversation_id, seq, sender_id, content, created_at, version, edited_at,"
    " deleted_at IS NOT NULL AS deleted"
)

#: A batch of new messages in one statement (group commit). The sends come as parallel arrays
#: in arrival order (`ord`). A send whose key the sender already used is found, not written; a
#: send from a non-member is left out (the caller finds out why). Each conversation's counter is
#: bumped once by its number of new messages, and these take the seqs it skipped, numbered in
#: arrival order. With several conversations, the counter rows are all locked, in id order,
#: before the first is updated (the `locked` init plan), so concurrent batches never deadlock.
#: Messages and outbox rows are inserted in (conversation, seq) order: within a conversation,
#: outbox ids follow seqs. The event's recipients are not written: the publisher adds them
#: (`outbox.recipients`).
_INSERT_MESSAGES_TEMPLATE = """
WITH req AS (
    SELECT *
      FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::jsonb[])
           WITH ORDINALITY AS r(conversation_id, sender_id, content, key, shard, trace, ord)
), found AS (
    -- One index probe per send, whatever the statistics: LIMIT 1 (the key is unique anyway)
    -- keeps the lookup a nested loop. A join let a generic plan made while the table looked
    -- empty (a fresh database) hash a scan of every message in every batch, for good.
    SELECT r.ord, m.*
      FROM req r
     CROSS JOIN LATERAL (
            SELECT m.id, m.conversation_id, m.seq, m.sender_id, m.content, m.created_at,
                   m.version, m.edited_at, m.deleted_at IS NOT NULL AS deleted
              FROM messages m
             WHERE m.sender_id = r.sender_id AND m.idempotency_key = r.key
             LIMIT 1) m
), fresh AS (
    SELECT r.*
      FROM req r
     WHERE NOT EXISTS (SELECT 1 FROM found f WHERE f.ord = r.ord)
       AND EXISTS (SELECT 1 FROM conversation_members cm
                    WHERE cm.conversation_id = r.conversation_id AND cm.user_id = r.sender_id)
), counts AS (
    SELECT conversation_id, count(*) AS n FROM fresh GROUP BY conversation_id
/*LOCKED*/), bump AS (
    UPDATE conversations c
       SET last_seq = c.last_seq + counts.n
      FROM counts
     WHERE c.id = counts.conversation_id
/*GUARD*/ RETURNING c.id, c.last_seq, counts.n
), seqs AS (
    SELECT f.*,
           b.last_seq - b.n
             + row_number() OVER (PARTITION BY f.conversation_id ORDER BY f.ord) AS seq
      FROM fresh f JOIN bump b ON b.id = f.conversation_id
), numbered AS MATERIALIZED (
    -- Every new message's row, drawn once: both inserts and the answer read it, so nothing
    -- joins back from the inserts' RETURNING (nested loops, quadratic in the batch, once the
    -- plan expects one row). clock_timestamp(), not now(): taken under the row lock, in the
    -- window's order, so created_at follows seq.
    SELECT s.*, gen_random_uuid() AS id, clock_timestamp() AS created_at
      FROM seqs s
), message AS (
    INSERT INTO messages (id, conversation_id, seq, sender_id, content, idempotency_key, created_at)
    SELECT id, conversation_id, seq, sender_id, content, key, created_at
      FROM numbered
     ORDER BY conversation_id, seq
), event AS (
    INSERT INTO outbox (shard, topic, event_type, partition_key, payload, trace_context)
    SELECT shard, $7::text, $7::text, conversation_id::text,
           convert_to(jsonb_build_object(
               'event_id', gen_random_uuid(),
               'conversation_id', conversation_id,
               'seq', seq,
               'message_id', id,
               'sender_id', sender_id,
               'content', content,
               'created_at', created_at
           )::text, 'UTF8'),
           trace
      FROM numbered
     ORDER BY conversation_id, seq
 RETURNING id/*WAKE*/
)
SELECT ord, id, conversation_id, seq, sender_id, content, created_at,
       1 AS version, NULL::timestamptz AS edited_at, false AS deleted, true AS created
  FROM numbered
UNION ALL
SELECT ord, id, conversation_id, seq, sender_id, content, created_at, version, edited_at, deleted,
       false
  FROM found
"""

_LOCK_IN_ID_ORDER = """), locked AS MATERIALIZED (
    SELECT c.id FROM conversations c
     WHERE c.id IN (SELECT conversation_id FROM counts)
     ORDER BY c.id
       FOR UPDATE
"""
_AFTER_LOCKING = "       AND (SELECT count(*) FROM locked) > 0\n"

#: The outbox publisher's wake-up in the batch's own transaction: evaluated for each event row
#: written (none written, none sent), delivered at the commit; PostgreSQL sends identical
#: notifications of one transaction once.
_WAKE_IN_COMMIT = ", pg_notify($8::text, $9::text)"


def _insert_messages(*, one_conversation: bool, wake: bool) -> str:
    """The batch statement's variant. One conversation (every idle send, a hot conversation):
    one row lock cannot deadlock, and locking it apart would cost a WAL record and a plan node
    for nothing; several are locked in id order first."""
    locked, guard = ("", "") if one_conversation else (_LOCK_IN_ID_ORDER, _AFTER_LOCKING)
    return (
        _INSERT_MESSAGES_TEMPLATE.replace("/*LOCKED*/", locked)
        .replace("/*GUARD*/", guard)
        .replace("/*WAKE*/", _WAKE_IN_COMMIT if wake else "")
    )


#: (one conversation, wake-up in the commit) -> statement.
_INSERT_MESSAGES = {
    (one, wake): _insert_messages(one_conversation=one, wake=wake)
    for one in (False, True)
    for wake in (False, True)
}


def batch_statement(*, one_conversation: bool) -> str:
    """The batch statement as `insert_messages` runs it (no wake-up), for the benchmark that
    drives it with nothing in front of it (`loadtest/bench_write/pgbench.py`)."""
    return _INSERT_MESSAGES[(one_conversation, False)]


#: Session settings of the chat service's connections. A generic plan: the batch statement is
#: large and its parameters are arrays, so planning it afresh per batch (a custom plan) cost
#: about 0.4 ms, a third of an idle send. A plan made once is kept for the connection's life (until
#: the next ANALYZE), so it must not hang on how big the tables looked then: every statement here
#: reads by index, and a generic plan made on a fresh database (or right after a TRUNCATE) chose
#: scans of whole tables that grew with every message.
SESSION_SETTINGS = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}

#: A concurrent transaction (another chat replica) wrote a key of the batch after the
#: statement's snapshot: the whole statement rolled back; once retried, it finds that message.
_KEY_RACE_RETRIES = 3

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

#: Conversations by id, as seen by user $2: their acknowledged cursor, and how many messages
#: after it others sent (their own are read by definition) and did not delete, counted up to
#: MAX_UNREAD_COUNTED (the count reads the index entries after the reader's position, so it is
#: bounded like a history page).
CONVERSATION = f"""
WITH base AS (
    SELECT c.id, c.title, c.created_at, c.last_seq, c.last_change,
           array_agg(m.user_id ORDER BY m.joined_at, m.user_id) AS member_ids,
           coalesce(max(m.acked_seq) FILTER (WHERE m.user_id = $2::uuid), 0) AS acked_seq
      FROM conversations c JOIN conversation_members m ON m.conversation_id = c.id
     WHERE c.id = ANY($1::uuid[])
     GROUP BY c.id
)
SELECT b.*,
       (SELECT count(*) FROM (SELECT 1 FROM messages u
                               WHERE u.conversation_id = b.id AND u.seq > b.acked_seq
                                 AND u.sender_id <> $2::uuid AND u.deleted_at IS NULL
                               LIMIT {MAX_UNREAD_COUNTED}) unread) AS unread_count
  FROM base b
 ORDER BY b.created_at, b.id
"""


def message_record(row: asyncpg.Record) -> MessageRecord:
    """A message row; a new one (the send batch's rows) has no change columns yet."""
    return MessageRecord(
        message_id=row["id"],
        conversation_id=row["conversation_id"],
        seq=row["seq"],
        sender_id=row["sender_id"],
        content=row["content"],
        created_at=row["created_at"],
        version=row.get("version", 1),
        edited_at=row.get("edited_at"),
        deleted=row.get("deleted", False),
    )


def conversation_record(row: asyncpg.Record) -> ConversationRecord:
    return ConversationRecord(
        conversation_id=row["id"],
        title=row["title"],
        member_ids=list(row["member_ids"]),
        created_at=row["created_at"],
        last_seq=row["last_seq"],
        acked_seq=row["acked_seq"],
        unread_count=row["unread_count"],
        last_change=row["last_change"],
    )


#: The presence of those of $2 who are $1 or whose presence $1 may see (a shared conversation, no
#: block either way: migration 0004), as the presence service announced it.
_VISIBLE_PRESENCE = """
SELECT asked.id AS user_id, coalesce(p.status, 'offline') AS status, p.changed_at AS since
  FROM unnest($2::uuid[]) AS asked(id)
  LEFT JOIN presence p ON p.user_id = asked.id
 WHERE asked.id = $1::uuid
    OR presence_visible($1::uuid, asked.id)
 ORDER BY asked.id
"""


class ChatStore:
    def __init__(self, pool: asyncpg.Pool, outbox_shards: int) -> None:
        self._pool = pool
        self._shards = outbox_shards

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    @property
    def outbox_shards(self) -> int:
        return self._shards

    @db_operation("token_version")
    async def token_version(self, user_id: uuid.UUID) -> int | None:
        """The user's current token version (migration 0005); None if there is no such user."""
        version: int | None = await self._pool.fetchval(
            "SELECT token_version FROM users WHERE id = $1", user_id
        )
        return version

    @db_operation("get_conversation")
    async def get_conversation(
        self, conversation_id: uuid.UUID, viewer: uuid.UUID
    ) -> ConversationRecord | None:
        row = await self._pool.fetchrow(CONVERSATION, [conversation_id], viewer)
        return conversation_record(row) if row is not None else None

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

    @db_operation("insert_messages")
    async def insert_messages(
        self, sends: Sequence[NewMessage], *, wake: str | None = None
    ) -> list[Stored]:
        """Write a batch of sends with distinct (sender, key) in one statement and transaction;
        each send's outcome, in order. Refused sends wrote nothing. `wake`: a wake-up payload
        (`outbox.wakeup`) to notify the outbox publisher with in this transaction, if it wrote
        events."""
        columns = (
            [s.conversation_id for s in sends],
            [s.sender_id for s in sends],
            [s.content for s in sends],
            [s.idempotency_key for s in sends],
            [outbox_shard(s.conversation_id, self._shards) for s in sends],
            [trace_context_json(s.trace_context) for s in sends],
        )
        one_conversation = len(set(columns[0])) == 1
        statement = _INSERT_MESSAGES[(one_conversation, wake is not None)]
        args = (*columns, MESSAGE_CREATED, *(() if wake is None else (WAKEUP_CHANNEL, wake)))
        for attempt in range(_KEY_RACE_RETRIES + 1):
            try:
                rows = await self._pool.fetch(statement, *args)
                break
            except asyncpg.UniqueViolationError as exc:
                if (
                    exc.constraint_name != "messages_sender_idempotency_key"
                    or attempt == _KEY_RACE_RETRIES
                ):
                    raise
        outcomes: list[Stored] = [Refused()] * len(sends)
        for row in rows:
            message = message_record(row)
            outcomes[row["ord"] - 1] = Created(message) if row["created"] else Existing(message)
        return outcomes

    @db_operation("history")
    async def history(
        self, conversation_id: uuid.UUID, after_seq: int, limit: int, up_to: int
    ) -> list[MessageRecord]:
        """Messages after `after_seq` up to `up_to` (the last seq when the reader's membership was
        checked: a member who left since then gets nothing written after the leave)."""
        rows = await self._pool.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages "
            "WHERE conversation_id = $1 AND seq > $2 AND seq <= $4 ORDER BY seq LIMIT $3",
            conversation_id,
            after_seq,
            limit,
            up_to,
        )
        return [message_record(r) for r in rows]

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
            trace_context_json(trace_context or inject()),
        )
        return result

    @db_operation("visible_presence")
    async def visible_presence(
        self, viewer: uuid.UUID, user_ids: list[uuid.UUID]
    ) -> list[PresenceRecord]:
        rows = await self._pool.fetch(_VISIBLE_PRESENCE, viewer, list(dict.fromkeys(user_ids)))
        return [PresenceRecord(r["user_id"], r["status"], r["since"]) for r in rows]
