"""What every writer of the transactional outbox shares (chat messages, receipts and membership
changes, presence transitions): which shard a row goes to, and how its trace context is stored.

A writer inserts its rows with SQL of its own, in the same transaction as the change they
announce; the publisher's side is `realchat.outbox.publisher` and `realchat.outbox.store`.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from realchat.storage.pool import Connection


def outbox_shard(partition_key: uuid.UUID, shards: int) -> int:
    """The outbox shard of a partition key (a conversation, a user): stable, so the events of one
    key have one publisher at a time and go out in commit order."""
    return zlib.crc32(partition_key.bytes) % shards


def trace_context_json(carrier: Mapping[str, str]) -> str:
    """An outbox row's `trace_context` column: the writer's span, for the publisher to continue."""
    if not carrier:  # untraced: most rows, and encoding nothing costs more than the rest
        return "{}"
    return json.dumps(dict(carrier), separators=(",", ":"))


#: One event into the outbox, in the caller's transaction: its payload already encoded.
_ENQUEUE = """
INSERT INTO outbox (shard, topic, event_type, partition_key, payload, trace_context)
VALUES ($1::int, $2::text, $3::text, $4::text, $5::bytea, $6::jsonb)
"""


async def enqueue(
    conn: Connection,
    *,
    shards: int,
    topic: str,
    event_type: str,
    key: uuid.UUID,
    payload: bytes,
    trace_context: Mapping[str, str],
) -> None:
    """Write one event in the transaction `conn` is in: it is published if and only if that
    transaction commits, after the events of its key committed before it."""
    await conn.execute(
        _ENQUEUE,
        outbox_shard(key, shards),
        topic,
        event_type,
        str(key),
        payload,
        trace_context_json(trace_context),
    )
