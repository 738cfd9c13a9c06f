"""Backfills: what a connection missed, read from the chat service (PostgreSQL), racing live
events without losing or reordering any.

While a conversation is being backfilled its live events are not queued, only their highest seq
is remembered; the backfill pages through history until it has delivered at least that far and a
page comes back short. The final check and the switch back to live happen with no await between
them, on the one event loop that also dispatches live events, so no event can slip through.

A gap backfill whose history read fails because the chat service is unavailable retries, with
a doubling delay up to a cap, for as long as the connection is open: the live event it holds
back must not wait for the next event or a sync to come out. An explicit sync does not retry:
its client gets `sync_failed` and decides.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Protocol

import structlog

from realchat.contract.frames import Message, MessageFrame, SyncDoneFrame, encode
from realchat.gateway import metrics
from realchat.gateway.chat_client import ChatCallError
from realchat.gateway.connection import Connection

log = structlog.get_logger(__name__)


class HistoryReader(Protocol):
    async def history(
        self, user: uuid.UUID, conversation_id: str, after_seq: int, limit: int
    ) -> tuple[list[Message], int]: ...


class Backfiller:
    def __init__(
        self,
        history: HistoryReader,
        page_size: int,
        *,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        max_concurrent: int = 32,
    ) -> None:
        self._history = history
        self._page_size = page_size
        #: Pages held (being read or queued) at once, across this gateway's connections.
        self._pages = asyncio.Semaphore(max_concurrent)
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s

    def start(self, connection: Connection, conversation_id: str, *, retry: bool = True) -> None:
        """Backfill a conversation (after a gap, or for a sync) unless one already runs;
        `retry`: retry history reads while the chat service is unavailable."""
        cursor = connection.cursor(conversation_id)
        if cursor.backfill is not None and not cursor.backfill.done():
            return
        cursor.syncing = True
        cursor.backfill = connection.spawn(self._run(connection, conversation_id, retry))

    async def _read(
        self, connection: Connection, conversation_id: str, after: int, retry: bool
    ) -> list[Message]:
        """A page, returned holding a page slot (the caller releases it once the page is
        queued); no slot is held while waiting to retry."""
        delay = self._retry_initial_s
        while True:
            await self._pages.acquire()
            try:
                page, _ = await self._history.history(
                    connection.user_id, conversation_id, after, self._page_size
                )
                return page
            except BaseException as error:
                self._pages.release()
                if not isinstance(error, ChatCallError):
                    raise
                if not retry or error.is_client_error or not connection.is_open:
                    raise
                metrics.BACKFILL_RETRIES.inc()
                log.warning(
                    "backfill read failed; retrying",
                    conversation_id=conversation_id,
                    error=error.message,
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
                delay = min(2 * delay, self._retry_max_s)

    async def _run(self, connection: Connection, conversation_id: str, retry: bool) -> None:
        cursor = connection.cursor(conversation_id)
        sent = 0
        try:
            while connection.is_open:
                after = cursor.delivered or 0
                page = await self._read(connection, conversation_id, after, retry)
                try:
                    for message in page:
                        if message.seq != (cursor.delivered or 0) + 1:
                            continue  # already delivered meanwhile
                        if not await connection.push_backfill(encode(MessageFrame(message))):
                            return
                        cursor.delivered = message.seq
                        sent += 1
                finally:
                    self._pages.release()
                caught_up = (cursor.delivered or 0) >= cursor.seen_while_syncing
                if len(page) < self._page_size and caught_up:
                    cursor.syncing = False  # same loop tick as the check: no event slips in
                    return
        except BaseException:
            # Back to live: the next live event finds the gap and starts a new backfill.
            cursor.syncing = False
            raise
        finally:
            metrics.SYNC_BACKFILL.observe(sent)

    async def sync(self, connection: Connection, positions: dict[str, int]) -> dict[str, int]:
        """Deliver everything after `positions` in each conversation; return where each ended.

        The caller checked membership (an outsider's conversation fails its first history read,
        which raises and aborts the sync before anything is sent)."""
        for conversation_id, position in positions.items():
            cursor = connection.cursor(conversation_id)
            if cursor.backfill is not None and not cursor.backfill.done():
                await cursor.backfill
            cursor.delivered = position
            cursor.seen_while_syncing = 0
            self.start(connection, conversation_id, retry=False)
        for conversation_id in positions:
            task = connection.cursor(conversation_id).backfill
            if task is not None:
                await task
        done = {c: connection.cursor(c).delivered or 0 for c in positions}
        connection.push(encode(SyncDoneFrame(done)))
        return done
