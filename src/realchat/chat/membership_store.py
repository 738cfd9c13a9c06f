"""The SQL of membership: creating conversations, adding and removing members, blocks, and the
caller's conversations (or only their positions in them) a page at a time.

Every change takes the conversation's row lock (the one the send path's counter update takes),
checks the rules of `membership.py` on what it read under it, writes, and records a
`MembershipChanged` event in the outbox, all in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from realchat.chat.membership import Candidate
from realchat.chat.metrics import db_operation
from realchat.chat.store import CONVERSATION, ConversationRecord, conversation_record
from realchat.events.models import MembershipChange
from realchat.events.topics import MEMBERSHIP_CHANGED
from realchat.observability.tracing import inject
from realchat.outbox.writer import outbox_shard, trace_context_json

if TYPE_CHECKING:
    from realchat.storage.pool import Connection

#: Decides, from the candidates and the member count now, whom to add (or raises).
AdditionRule = Callable[[list[Candidate], int], list[uuid.UUID]]
#: Decides, from (creator, actor is a member, target is a member), the kind of removal.
RemovalRule = Callable[[uuid.UUID, bool, bool], MembershipChange]

_CANDIDATES = """
SELECT r.id,
       EXISTS (SELECT 1 FROM users u WHERE u.id = r.id) AS known,
       EXISTS (SELECT 1 FROM user_blocks b
                WHERE (b.blocker = $3::uuid AND b.blocked = r.id)
                   OR (b.blocker = r.id AND b.blocked = $3::uuid)) AS blocked,
       EXISTS (SELECT 1 FROM conversation_members m
                WHERE m.conversation_id = $1::uuid AND m.user_id = r.id) AS member
  FROM unnest($2::uuid[]) WITH ORDINALITY AS r(id, ord)
 ORDER BY r.ord
"""

#: A membership change's event: told to the members after it and to the users it removed.
_EVENT = """
INSERT INTO outbox (shard, topic, event_type, partition_key, payload, trace_context)
SELECT $1::int, $2::text, $2::text, c.id::text,
       convert_to(jsonb_build_object(
           'event_id', gen_random_uuid(),
           'conversation_id', c.id,
           'change', $4::text,
           'user_ids', to_jsonb($5::uuid[]),
           'by', $6::uuid,
           'seq', c.last_seq,
           'changed_at', clock_timestamp(),
           'recipients', (SELECT coalesce(jsonb_agg(u ORDER BY u), '[]'::jsonb)
                            FROM (SELECT user_id AS u FROM conversation_members
                                   WHERE conversation_id = c.id
                                  UNION
                                  SELECT unnest($5::uuid[])) AS told)
       )::text, 'UTF8'),
       $7::jsonb
  FROM conversations c
 WHERE c.id = $3::uuid
"""

#: A page of the user's positions, by conversation id after the cursor: one index range of
#: their memberships and each conversation's counters (no members, no unread count).
_POSITIONS_PAGE = """
SELECT m.conversation_id, m.acked_seq, c.last_seq, c.last_change
  FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id
 WHERE m.user_id = $1::uuid AND m.conversation_id > $2::uuid
 ORDER BY m.conversation_id
 LIMIT $3
"""


@dataclass(frozen=True)
class PositionRecord:
    """Where a user stands in one of their conversations (what a sync starts from)."""

    conversation_id: uuid.UUID
    acked_seq: int
    last_seq: int
    last_change: int


#: A page of the user's conversations, by conversation id after the cursor.
_PAGE = """
SELECT conversation_id FROM conversation_members
 WHERE user_id = $1::uuid AND conversation_id > $2::uuid
 ORDER BY conversation_id
 LIMIT $3
"""

_NIL = uuid.UUID(int=0)


class MembershipStore:
    def __init__(self, pool: asyncpg.Pool, outbox_shards: int) -> None:
        self._pool = pool
        self._shards = outbox_shards

    @db_operation("create_conversation")
    async def create_conversation(
        self, creator: uuid.UUID, member_ids: list[uuid.UUID], title: str, rule: AdditionRule
    ) -> ConversationRecord:
        conversation_id = uuid.uuid4()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO conversations (id, title, created_by) VALUES ($1, $2, $3)",
                conversation_id,
                title,
                creator,
            )
            await self._insert_members(conn, conversation_id, [creator])
            # Not announced: a new conversation reaches its members with its first message.
            await self._add(conn, conversation_id, creator, member_ids, rule, announce=False)
            row = await conn.fetchrow(CONVERSATION, [conversation_id], creator)
        assert row is not None
        return conversation_record(row)

    @db_operation("add_members")
    async def add_members(
        self,
        conversation_id: uuid.UUID,
        actor: uuid.UUID,
        user_ids: list[uuid.UUID],
        rule: AdditionRule,
    ) -> ConversationRecord | None:
        """None if there is no such conversation."""
        async with self._pool.acquire() as conn, conn.transaction():
            if await self._lock(conn, conversation_id) is None:
                return None
            await self._add(conn, conversation_id, actor, user_ids, rule)
            row = await conn.fetchrow(CONVERSATION, [conversation_id], actor)
        assert row is not None
        return conversation_record(row)

    @db_operation("remove_member")
    async def remove_member(
        self, conversation_id: uuid.UUID, actor: uuid.UUID, target: uuid.UUID, rule: RemovalRule
    ) -> MembershipChange | None:
        """Take `target` out if `rule` allows; None if there is no such conversation."""
        async with self._pool.acquire() as conn, conn.transaction():
            creator = await self._lock(conn, conversation_id)
            if creator is None:
                return None
            rows = await conn.fetch(
                "SELECT user_id FROM conversation_members "
                "WHERE conversation_id = $1 AND user_id = ANY($2::uuid[])",
                conversation_id,
                [actor, target],
            )
            present = {r["user_id"] for r in rows}
            change = rule(creator, actor in present, target in present)
            await conn.execute(
                "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
                conversation_id,
                target,
            )
            await self._announce(conn, conversation_id, change, [target], actor)
        return change

    @db_operation("block_user")
    async def block(self, blocker: uuid.UUID, blocked: uuid.UUID) -> bool:
        """False if there is no such user."""
        status: str = await self._pool.execute(
            "INSERT INTO user_blocks (blocker, blocked) SELECT $1, id FROM users WHERE id = $2 "
            "ON CONFLICT DO NOTHING",
            blocker,
            blocked,
        )
        if status.endswith(" 1"):
            return True
        return bool(await self._pool.fetchval("SELECT true FROM users WHERE id = $1", blocked))

    @db_operation("unblock_user")
    async def unblock(self, blocker: uuid.UUID, blocked: uuid.UUID) -> None:
        await self._pool.execute(
            "DELETE FROM user_blocks WHERE blocker = $1 AND blocked = $2", blocker, blocked
        )

    @db_operation("blocked_users")
    async def blocked(self, blocker: uuid.UUID, limit: int) -> list[uuid.UUID]:
        rows = await self._pool.fetch(
            "SELECT blocked FROM user_blocks WHERE blocker = $1 ORDER BY created_at, blocked "
            "LIMIT $2",
            blocker,
            limit,
        )
        return [r["blocked"] for r in rows]

    @db_operation("list_positions")
    async def positions_page(
        self, user_id: uuid.UUID, after: uuid.UUID | None, limit: int
    ) -> list[PositionRecord]:
        """Up to `limit` of the user's positions with conversation ids above `after`, by id."""
        rows = await self._pool.fetch(_POSITIONS_PAGE, user_id, after or _NIL, limit)
        return [
            PositionRecord(r["conversation_id"], r["acked_seq"], r["last_seq"], r["last_change"])
            for r in rows
        ]

    @db_operation("list_conversations")
    async def conversations_page(
        self, user_id: uuid.UUID, after: uuid.UUID | None, limit: int
    ) -> list[ConversationRecord]:
        """Up to `limit` of the user's conversations with ids above `after`, by id."""
        ids = await self._pool.fetch(_PAGE, user_id, after or _NIL, limit)
        if not ids:
            return []
        rows = await self._pool.fetch(CONVERSATION, [r["conversation_id"] for r in ids], user_id)
        return sorted((conversation_record(r) for r in rows), key=lambda c: c.conversation_id)

    async def _lock(self, conn: Connection, conversation_id: uuid.UUID) -> uuid.UUID | None:
        """Take the conversation's row lock (senders wait behind it); its creator, or None."""
        creator: uuid.UUID | None = await conn.fetchval(
            "SELECT created_by FROM conversations WHERE id = $1 FOR UPDATE", conversation_id
        )
        return creator

    async def _add(
        self,
        conn: Connection,
        conversation_id: uuid.UUID,
        actor: uuid.UUID,
        user_ids: list[uuid.UUID],
        rule: AdditionRule,
        *,
        announce: bool = True,
    ) -> None:
        wanted = list(dict.fromkeys(u for u in user_ids if u != actor))
        rows = await conn.fetch(_CANDIDATES, conversation_id, wanted, actor)
        candidates = [Candidate(r["id"], r["known"], r["blocked"], r["member"]) for r in rows]
        members_now: int = await conn.fetchval(
            "SELECT count(*) FROM conversation_members WHERE conversation_id = $1",
            conversation_id,
        )
        new = rule(candidates, members_now)
        if not new:
            return
        await self._insert_members(conn, conversation_id, new)
        if announce:
            await self._announce(conn, conversation_id, "added", new, actor)

    async def _insert_members(
        self, conn: Connection, conversation_id: uuid.UUID, user_ids: list[uuid.UUID]
    ) -> None:
        await conn.executemany(
            "INSERT INTO conversation_members (conversation_id, user_id, joined_at) "
            "VALUES ($1, $2, clock_timestamp()) ON CONFLICT DO NOTHING",
            [(conversation_id, u) for u in user_ids],
        )

    async def _announce(
        self,
        conn: Connection,
        conversation_id: uuid.UUID,
        change: MembershipChange,
        user_ids: list[uuid.UUID],
        actor: uuid.UUID,
    ) -> None:
        await conn.execute(
            _EVENT,
            outbox_shard(conversation_id, self._shards),
            MEMBERSHIP_CHANGED,
            conversation_id,
            change,
            user_ids,
            actor,
            trace_context_json(inject()),
        )
