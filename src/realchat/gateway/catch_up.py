"""A returning client's catch-up on changes: the edits and deletes of messages it already had.

A `sync` backfills the messages after the client's position, each in its current state. The
messages at or before it may have changed while the client was away; the client names the
change counter of its last `sync_done` (`changes`), and gets each message changed since, as it
is now, in a `message_update` frame (the client holds the message: nothing to order against).
"""

from __future__ import annotations

import uuid
from typing import Protocol

from realchat.contract.frames import Message, MessageUpdateFrame, encode
from realchat.gateway.connection import Connection


class ChangesReader(Protocol):
    async def changes(
        self, user: uuid.UUID, conversation_id: str, after_change: int, up_to_seq: int, limit: int
    ) -> tuple[list[Message], int]: ...


async def catch_up(
    reader: ChangesReader,
    connection: Connection,
    conversation_id: str,
    after_change: int,
    up_to_seq: int,
    page_size: int,
) -> int:
    """Send the messages up to `up_to_seq` changed after `after_change`; how many."""
    sent = 0
    while connection.is_open:
        page, after_change = await reader.changes(
            connection.user_id, conversation_id, after_change, up_to_seq, page_size
        )
        for message in page:
            if not await connection.push_backfill(encode(MessageUpdateFrame(message))):
                return sent
            sent += 1
        if len(page) < page_size:
            break
    return sent
