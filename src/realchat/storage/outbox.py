"""What every writer of the transactional outbox shares (the publisher's side is in
`realchat.chat.outbox_store`)."""

from __future__ import annotations

import uuid
import zlib


def outbox_shard(partition_key: uuid.UUID, shards: int) -> int:
    """The outbox shard of a partition key (a conversation, a user): stable, so the events of one
    key have one publisher at a time and go out in commit order."""
    return zlib.crc32(partition_key.bytes) % shards
