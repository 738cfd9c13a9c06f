"""The outbox's SQL: pending batches of one shard, published marks, dead letters, replay.

A shard is leased with a transaction-level advisory lock: the batch is read, published and marked
inside that one transaction, so a publisher that crashes or loses its connection simply leaves
its rows pending for the next lease holder, and two publishers can never work one shard at once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import asyncpg

from realchat.events.topics import MESSAGE_CREATED
from realchat.outbox.recipients import add_recipients
from realchat.outbox.rows import DeadLetter, OutboxEvent

if TYPE_CHECKING:
    from realchat.storage.pool import Connection

#: Namespace of the outbox shard advisory locks (the second key is the shard number).
_LEASE_NAMESPACE = 0x4F555458  # "OUTX"


def _event(row: asyncpg.Record) -> OutboxEvent:
    return OutboxEvent(
        id=row["id"],
        shard=row["shard"],
        topic=row["topic"],
        event_type=row["event_type"],
        partition_key=row["partition_key"],
        payload=bytes(row["payload"]),
        trace_context=_json_object(row["trace_context"]),
        attempts=row["attempts"],
    )


def _json_object(value: Any) -> dict[str, str]:
    loaded = json.loads(value) if isinstance(value, str) else value
    return {str(k): str(v) for k, v in (loaded or {}).items()}


async def shards_with_pending(pool: asyncpg.Pool) -> list[int]:
    """Shards that have unpublished events (a loose index scan over the partial index)."""
    rows = await pool.fetch(
        """WITH RECURSIVE s AS (
               (SELECT shard FROM outbox WHERE published_at IS NULL ORDER BY shard LIMIT 1)
               UNION ALL
               SELECT (SELECT o.shard FROM outbox o
                        WHERE o.published_at IS NULL AND o.shard > s.shard
                        ORDER BY o.shard LIMIT 1)
                 FROM s WHERE s.shard IS NOT NULL
           )
           SELECT shard FROM s WHERE shard IS NOT NULL"""
    )
    return [r["shard"] for r in rows]


async def try_lease(conn: Connection, shard: int) -> bool:
    """Take the shard for the current transaction; False if another publisher holds it."""
    leased: bool = await conn.fetchval(
        "SELECT pg_try_advisory_xact_lock($1, $2)", _LEASE_NAMESPACE, shard
    )
    return leased


#: A shard's next pending events, each message event with its conversation's members (a JSON
#: array, once per conversation; `recipients.py`). Only keys that are UUIDs in canonical text
#: are cast (the filter runs before the cast): a malformed key gets no members instead of
#: failing the shard's every batch.
_UUID_TEXT = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_PENDING_BATCH = f"""
WITH batch AS MATERIALIZED (
    SELECT id, shard, topic, event_type, partition_key, payload, trace_context, attempts
      FROM outbox WHERE shard = $1 AND published_at IS NULL
     ORDER BY id LIMIT $2
), members AS (
    SELECT m.conversation_id::text AS conversation,
           json_agg(m.user_id ORDER BY m.user_id)::text AS ids
      FROM conversation_members m
     WHERE m.conversation_id = ANY (ARRAY(
               SELECT DISTINCT b.partition_key::uuid FROM batch b
                WHERE b.event_type = $3
                  AND b.partition_key ~ '{_UUID_TEXT}'))
     GROUP BY m.conversation_id
)
SELECT b.*, m.ids AS members
  FROM batch b LEFT JOIN members m ON m.conversation = b.partition_key
 ORDER BY b.id
"""


async def pending_batch(conn: Connection, shard: int, limit: int) -> list[OutboxEvent]:
    """The shard's next `limit` pending events in id order, as they are published: message
    events get their recipients, read in the same round trip."""
    rows = await conn.fetch(_PENDING_BATCH, shard, limit, MESSAGE_CREATED)
    members = {r["partition_key"]: r["members"].encode() for r in rows if r["members"]}
    return add_recipients([_event(r) for r in rows], members)


async def mark_published(conn: Connection, ids: list[int]) -> None:
    if ids:
        await conn.execute(
            "UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[])", ids
        )


async def record_failures(conn: Connection, failures: dict[int, str]) -> None:
    if failures:
        await conn.executemany(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
            list(failures.items()),
        )


async def dead_letter(conn: Connection, outbox_id: int, error: str) -> None:
    """Move one poison event out of the outbox, keeping everything needed to replay it."""
    await conn.execute(
        """WITH gone AS (DELETE FROM outbox WHERE id = $1 RETURNING *)
           INSERT INTO dead_letters (outbox_id, shard, topic, event_type, partition_key, payload,
                                     trace_context, created_at, attempts, error)
           SELECT id, shard, topic, event_type, partition_key, payload, trace_context,
                  created_at, attempts + 1, $2 FROM gone""",
        outbox_id,
        error,
    )


async def delete_published_before(pool: asyncpg.Pool, age_s: float, limit: int = 10_000) -> int:
    """Keep the outbox small: drop rows published more than `age_s` ago, a bounded batch."""
    result: str = await pool.execute(
        """DELETE FROM outbox WHERE id IN (
               SELECT id FROM outbox
                WHERE published_at < clock_timestamp() - make_interval(secs => $1)
                LIMIT $2)""",
        age_s,
        limit,
    )
    return int(result.split()[-1])


async def pending_stats(pool: asyncpg.Pool) -> tuple[int, float]:
    """How many events wait, and the age in seconds of the oldest (0 when none)."""
    row = await pool.fetchrow(
        """SELECT count(*) AS n,
                  coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS age
             FROM outbox WHERE published_at IS NULL"""
    )
    assert row is not None
    return int(row["n"]), float(row["age"])


def _dead_letter(row: asyncpg.Record) -> DeadLetter:
    return DeadLetter(
        id=row["id"],
        outbox_id=row["outbox_id"],
        topic=row["topic"],
        event_type=row["event_type"],
        partition_key=row["partition_key"],
        payload=bytes(row["payload"]),
        attempts=row["attempts"],
        error=row["error"],
        created_at=row["created_at"],
        dead_lettered_at=row["dead_lettered_at"],
        replayed_at=row["replayed_at"],
    )


async def list_dead_letters(pool: asyncpg.Pool, include_replayed: bool) -> list[DeadLetter]:
    rows = await pool.fetch(
        "SELECT * FROM dead_letters WHERE $1 OR replayed_at IS NULL ORDER BY id", include_replayed
    )
    return [_dead_letter(r) for r in rows]


async def get_dead_letter(pool: asyncpg.Pool, dead_letter_id: int) -> DeadLetter | None:
    row = await pool.fetchrow("SELECT * FROM dead_letters WHERE id = $1", dead_letter_id)
    return _dead_letter(row) if row is not None else None


async def replay_dead_letter(pool: asyncpg.Pool, dead_letter_id: int) -> int | None:
    """Put a dead letter back in the outbox (as a new, last event of its shard); return the new
    outbox id, or None if there is no such unreplayed dead letter."""
    async with pool.acquire() as conn, conn.transaction():
        outbox_id: int | None = await conn.fetchval(
            """WITH marked AS (
                   UPDATE dead_letters SET replayed_at = clock_timestamp()
                    WHERE id = $1 AND replayed_at IS NULL
                RETURNING *)
               INSERT INTO outbox (shard, topic, event_type, partition_key, payload,
                                   trace_context, created_at)
               SELECT shard, topic, event_type, partition_key, payload, trace_context, created_at
                 FROM marked
               RETURNING id""",
            dead_letter_id,
        )
    return outbox_id
