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


def outbox_shard(partition_key: uuid.UUID, shards: int) -> int:
    """The outbox shard of a partition key (a conversation, a user): stable, so the events of one
    key have one publisher at a time and go out in commit order."""
    return zlib.crc32(partition_key.bytes) % shards


def trace_context_json(carrier: Mapping[str, str]) -> str:
    """An outbox row's `trace_context` column: the writer's span, for the publisher to continue."""
    return json.dumps(dict(carrier), separators=(",", ":"))
