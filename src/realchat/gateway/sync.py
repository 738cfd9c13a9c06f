"""Backfills: what a connection missed, read from the chat service (PostgreSQL), racing live
events without losing or reordering any.

The conversation's cursor (`cursor.py`) owns the state: while a backfill owns a conversation its
live events are only remembered (their highest seq); this module pages through history, hands
each message to the cursor and sends what it says to, until the cursor says it is caught up.
That final check and the switch back to live happen in one call, on the one event loop that
also dispatches live events, so no event can slip through.

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

from realchat.backoff import Backoff
from realchat.contract.frames import Message, MessageFrame, SyncDoneFrame, encode
from realchat.gateway import metrics
from realchat.gateway.catch_up import ChangesReader, catch_up
from realchat.gateway.chat_client import ChatCallError
from realchat.gateway.connection import Connection
from realchat.gateway.cursor import Verdict
from realchat.gateway.page_slots import PageSlots

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
        changes: ChangesReader | None = None,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        max_concurrent: int = 32,
        max_concurrent_per_user: int = 4,
    ) -> None:
        self._history = history
        self._changes = changes
        self._page_size = page_size
        #: Pages held (being read or queued) at once, across this gateway's connections and
        #: per user.
        self._pages = PageSlots(max_concurrent, max_concurrent_per_user)
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s

    def start(self, connection: Connection, conversation_id: str, *, retry: bool = True) -> None:
        """Run the backfill the conversation's cursor has begun (after a gap, or for a sync)
        unless one already runs; `retry`: retry history reads while the chat service is
        unavailable."""
        if connection.running_backfill(conversation_id) is None:
            connection.run_backfill(conversation_id, self._run(connection, conversation_id, retry))

    async def _read(
        self, connection: Connection, conversation_id: str, after: int, retry: bool
    ) -> list[Message]:
        """A page, returned holding a page slot (the caller releases it once the page is
        queued); no slot is held while waiting to retry."""
        # Not jittered: the plain doubling the module docstring states.
        backoff = Backoff(self._retry_initial_s, self._retry_max_s, jitter=0.0)
        while True:
            await self._pages.acquire(connection.user_id)
            try:
                page, _ = await self._history.history(
                    connection.user_id, conversation_id, after, self._page_size
                )
                return page
            except BaseException as error:
                self._pages.release(connection.user_id)
                if not isinstance(error, ChatCallError):
                    raise
                if not retry or error.is_client_error or not connection.is_open:
                    raise
                metrics.BACKFILL_RETRIES.inc()
                delay = backoff.next_delay()
                log.warning(
                    "backfill read failed; retrying",
                    conversation_id=conversation_id,
                    error=error.message,
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)

    async def _run(self, connection: Connection, conversation_id: str, retry: bool) -> None:
        cursor = connection.cursor(conversation_id)
        sent = 0
        try:
            while connection.is_open:
                page = await self._read(connection, conversation_id, cursor.backfill_after(), retry)
                try:
                    for message in page:
                        if cursor.on_backfilled(message.seq) is not Verdict.DELIVER:
                            continue  # delivered meanwhile, or the client's own send
                        if not await connection.push_backfill(encode(MessageFrame(message))):
                            return
                        sent += 1
                    # Changes that waited for messages of this page (edits read before the page
                    # or after it: a client applies only a higher version) follow them.
                    if cursor.deferring:
                        connection.release_changes(cursor)
                finally:
                    self._pages.release(connection.user_id)
                if cursor.on_page_end(short=len(page) < self._page_size):
                    return  # live again, in the same loop tick as the check: no event slips in
        except BaseException:
            # Back to live: the next live event finds the gap and starts a new backfill.
            cursor.on_backfill_ended()
            raise
        finally:
            metrics.SYNC_BACKFILL.observe(sent)

    async def sync(
        self,
        connection: Connection,
        positions: dict[str, int],
        changes: dict[str, int] | None = None,
        change_counters: dict[str, int] | None = None,
        last_seqs: dict[str, int] | None = None,
    ) -> dict[str, int]:
        """Deliver everything after `positions` in each conversation; return where each ended.

        `changes`: the client's change counters, for the catch-up on the messages at or before
        its positions (`catch_up.py`); `change_counters`: each conversation's counter as read
        before anything was sent, told in `sync_done` for the client's next sync; `last_seqs`:
        each conversation's last seq from that same read. A conversation the client already
        has up to it needs no history read: what is written later comes live, so its cursor
        goes live at once (a reconnect after a quiet spell costs no call per conversation).

        Live delivery starts on the connection (if it had not) once every conversation's
        backfill has begun: the live events held until then come after the backfilled ones.
        The caller checked membership (an outsider's conversation fails its first history read,
        which raises and aborts the sync before anything is sent)."""
        tasks = []
        for conversation_id, position in positions.items():
            while (running := connection.running_backfill(conversation_id)) is not None:
                await asyncio.wait([running])
            if (task := self._begin(connection, conversation_id, position, last_seqs)) is not None:
                tasks.append(task)
        connection.start_live()
        for task in tasks:
            await task
        if self._changes is not None:
            for conversation_id, after_change in (changes or {}).items():
                if conversation_id not in positions:
                    continue
                if change_counters is not None and after_change >= change_counters.get(
                    conversation_id, 0
                ):
                    # Nothing changed before the counter was read, and what changes after it
                    # comes live: no call (a reconnect after a quiet spell reads nothing).
                    continue
                await catch_up(
                    self._changes,
                    connection,
                    conversation_id,
                    after_change,
                    positions[conversation_id],
                    self._page_size,
                )
        done = {c: connection.cursor(c).delivered or 0 for c in positions}
        counters = None
        if change_counters is not None:
            counters = {c: change_counters.get(c, 0) for c in positions}
        connection.push(encode(SyncDoneFrame(done, counters)))
        return done

    def _begin(
        self,
        connection: Connection,
        conversation_id: str,
        position: int,
        last_seqs: dict[str, int] | None,
    ) -> asyncio.Task[None] | None:
        """Start a sync's backfill of one conversation; None if there is nothing to read (the
        client is at its last seq as read): then the cursor is live again at once, as after an
        empty page, in the same loop tick (no live event slips in)."""
        cursor = connection.cursor(conversation_id)
        cursor.on_sync(position)
        if last_seqs is None or position < last_seqs.get(conversation_id, position + 1):
            self.start(connection, conversation_id, retry=False)
            return connection.running_backfill(conversation_id)
        cursor.on_page_end(short=True)
        if cursor.deferring:
            connection.release_changes(cursor)
        metrics.SYNC_BACKFILL.observe(0)
        return None
