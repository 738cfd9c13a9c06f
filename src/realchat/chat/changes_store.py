"""The SQL of edits, deletes and renames: one transaction each, under the conversation's lock.

The lock is the one every send takes (`store.insert_messages` bumps the conversation's counter
row), so a change's outbox row is ordered after the rows of every message committed before it,
and its event names the members at that moment. A message keeps its seq; what changes is its
version, content and timestamps. The rules are `changes.py`'s, passed in as callables so that
they decide on what the transaction read.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import msgspec

from realchat.chat.changes import EarlierEdit, Target, is_replay, require_changeable
from realchat.chat.errors import IdempotencyConflict, PermissionDenied
from realchat.chat.metrics import db_operation
from realchat.chat.store import (
    CONVERSATION,
    MESSAGE_COLUMNS,
    ConversationRecord,
    MessageRecord,
    conversation_record,
    message_record,
)
from realchat.contract.error_codes import ErrorCode
from realchat.events.models import ConversationRenamed, MessageChange, MessageChanged
from realchat.events.topics import CONVERSATION_CHANGED, CONVERSATION_RENAMED, MESSAGE_CHANGED
from realchat.outbox.writer import enqueue

if TYPE_CHECKING:
    from realchat.storage.pool import Connection

_encoder = msgspec.json.Encoder()


def _row(row: asyncpg.Record | None) -> asyncpg.Record:
    """A row the transaction's lock guarantees (it exists, nothing can have removed it)."""
    if row is None:
        raise RuntimeError("a locked row vanished")
    return row


@dataclass(frozen=True)
class Changed:
    message: MessageRecord
    #: False when nothing was written: a replayed edit, or a delete of a tombstone.
    created: bool


_LOCK = """
SELECT EXISTS (SELECT 1 FROM conversation_members
                WHERE conversation_id = c.id AND user_id = $2::uuid) AS member
  FROM conversations c WHERE c.id = $1::uuid FOR UPDATE
"""

_EARLIER_EDIT = """
SELECT m.conversation_id, m.seq, mc.content, m.id
  FROM message_changes mc JOIN messages m ON m.id = mc.message_id
 WHERE mc.sender_id = $1::uuid AND mc.idempotency_key = $2::text
"""

_TARGET = f"""
SELECT {MESSAGE_COLUMNS} FROM messages
 WHERE conversation_id = $1::uuid AND seq = $2::bigint FOR UPDATE
"""

_APPLY = f"""
WITH counted AS (
    UPDATE conversations SET last_change = last_change + 1
     WHERE id = $4::uuid
 RETURNING last_change
)
UPDATE messages
   SET content = $2::text, version = version + 1, edited_at = clock_timestamp(),
       deleted_at = CASE WHEN $3::bool THEN clock_timestamp() ELSE deleted_at END,
       change_seq = (SELECT last_change FROM counted)
 WHERE id = $1::uuid
RETURNING {MESSAGE_COLUMNS}
"""

#: Messages of a conversation changed after change `$2`, up to seq `$3`, in change order.
_CHANGED_AFTER = f"""
SELECT {MESSAGE_COLUMNS}, change_seq FROM messages
 WHERE conversation_id = $1::uuid AND change_seq > $2::bigint AND seq <= $3::bigint
 ORDER BY change_seq
 LIMIT $4
"""

_MEMBERS = """
SELECT user_id FROM conversation_members WHERE conversation_id = $1::uuid ORDER BY user_id
"""


async def _lock_as_member(conn: Connection, conversation_id: uuid.UUID, actor: uuid.UUID) -> bool:
    """Take the conversation's lock; False if there is no such conversation, PermissionDenied
    if `actor` is not a member."""
    member = await conn.fetchval(_LOCK, conversation_id, actor)
    if member is None:
        return False
    if not member:
        raise PermissionDenied(ErrorCode.NOT_A_MEMBER, "you are not a member")
    return True


class ChangesStore:
    def __init__(self, pool: asyncpg.Pool, outbox_shards: int) -> None:
        self._pool = pool
        self._shards = outbox_shards

    @db_operation("change_message")
    async def change_message(
        self,
        conversation_id: uuid.UUID,
        seq: int,
        actor: uuid.UUID,
        *,
        content: str | None,
        key: str | None,
        trace_context: dict[str, str],
    ) -> Changed | None:
        """Edit (`content`, idempotent by `key`) or delete (`content` None) the message at
        `seq`; None if there is no such conversation. Raises the rules' refusals."""
        deleting = content is None
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if not await _lock_as_member(conn, conversation_id, actor):
                    return None
                if key is not None and content is not None:
                    earlier = await self._earlier_edit(conn, actor, key)
                    if is_replay(earlier, conversation_id, seq, content):
                        now = _row(await conn.fetchrow(_TARGET, conversation_id, seq))
                        return Changed(message_record(now), created=False)
                found = await conn.fetchrow(_TARGET, conversation_id, seq)
                target = (
                    Target(found["id"], found["sender_id"], found["deleted"])
                    if found is not None
                    else None
                )
                if not require_changeable(actor, target, deleting=deleting):
                    return Changed(message_record(_row(found)), created=False)
                updated = message_record(
                    _row(
                        await conn.fetchrow(
                            _APPLY, _row(found)["id"], content or "", deleting, conversation_id
                        )
                    )
                )
                if key is not None and content is not None:
                    await conn.execute(
                        "INSERT INTO message_changes "
                        "(sender_id, idempotency_key, message_id, version, content) "
                        "VALUES ($1, $2, $3, $4, $5)",
                        actor,
                        key,
                        updated.message_id,
                        updated.version,
                        content,
                    )
                change: MessageChange = "deleted" if deleting else "edited"
                await self._announce_change(conn, updated, change, trace_context)
        except asyncpg.UniqueViolationError:
            # The same key in another conversation at the same moment: never the same edit.
            raise IdempotencyConflict("client_change_id is being used for another edit") from None
        return Changed(updated, created=True)

    @db_operation("changes")
    async def changed_after(
        self, conversation_id: uuid.UUID, after_change: int, up_to_seq: int, limit: int
    ) -> tuple[list[MessageRecord], int]:
        """Messages changed after `after_change` (seq up to `up_to_seq`), as they are now, in
        change order; and the change counter of the last one (`after_change` if none)."""
        rows = await self._pool.fetch(
            _CHANGED_AFTER, conversation_id, after_change, up_to_seq, limit
        )
        last = rows[-1]["change_seq"] if rows else after_change
        return [message_record(r) for r in rows], last

    async def _earlier_edit(
        self, conn: Connection, actor: uuid.UUID, key: str
    ) -> EarlierEdit | None:
        row = await conn.fetchrow(_EARLIER_EDIT, actor, key)
        if row is None:
            return None
        return EarlierEdit(row["conversation_id"], row["seq"], row["content"])

    async def _announce_change(
        self,
        conn: Connection,
        message: MessageRecord,
        change: MessageChange,
        trace_context: dict[str, str],
    ) -> None:
        members = [r["user_id"] for r in await conn.fetch(_MEMBERS, message.conversation_id)]
        event = MessageChanged(
            event_id=uuid.uuid4(),
            conversation_id=message.conversation_id,
            seq=message.seq,
            message_id=message.message_id,
            sender_id=message.sender_id,
            change=change,
            version=message.version,
            content=message.content,
            created_at=message.created_at,
            changed_at=message.edited_at or message.created_at,
            recipients=members,
        )
        await self._enqueue(conn, MESSAGE_CHANGED, event, trace_context)

    async def _enqueue(
        self,
        conn: Connection,
        event_type: str,
        event: MessageChanged | ConversationRenamed,
        trace_context: dict[str, str],
    ) -> None:
        """The event into the outbox, in `conn`'s transaction, on the conversation's key."""
        await enqueue(
            conn,
            shards=self._shards,
            topic=CONVERSATION_CHANGED,
            event_type=event_type,
            key=event.conversation_id,
            payload=_encoder.encode(event),
            trace_context=trace_context,
        )

    @db_operation("rename_conversation")
    async def rename(
        self,
        conversation_id: uuid.UUID,
        actor: uuid.UUID,
        title: str,
        trace_context: dict[str, str],
    ) -> ConversationRecord | None:
        """Set the title and tell the members (nothing if it is the title already); None if
        there is no such conversation."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await _lock_as_member(conn, conversation_id, actor):
                return None
            row = await conn.fetchrow(
                "UPDATE conversations SET title = $2 WHERE id = $1 AND title IS DISTINCT FROM $2 "
                "RETURNING last_seq, clock_timestamp() AS at",
                conversation_id,
                title,
            )
            if row is not None:
                members = [r["user_id"] for r in await conn.fetch(_MEMBERS, conversation_id)]
                event = ConversationRenamed(
                    event_id=uuid.uuid4(),
                    conversation_id=conversation_id,
                    title=title,
                    by=actor,
                    seq=row["last_seq"],
                    renamed_at=row["at"],
                    recipients=members,
                )
                await self._enqueue(conn, CONVERSATION_RENAMED, event, trace_context)
            record = _row(await conn.fetchrow(CONVERSATION, [conversation_id], actor))
        return conversation_record(record)
