"""Waking the outbox publisher when the chat service committed new events, so an event does not
wait out the publisher's poll interval.

Why not NOTIFY inside the write transaction: PostgreSQL serialises the commits of all
transactions that sent a notification (a global lock held through the commit's WAL flush), which
would undo group commit. Instead, the writer notifies *after* its commit, from a transaction of
its own that writes nothing (no WAL flush), at most one at a time per chat process, coalescing
the commits that happen meanwhile into the next one.

Guarantee: best effort only. A lost notification (the listener reconnecting, PostgreSQL
restarting) delays events to the next poll, which stays the safety net; nothing is ever lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from realchat.storage.pool import DATABASE_ERRORS

if TYPE_CHECKING:
    from realchat.storage.pool import Connection

log = structlog.get_logger(__name__)

#: The notification channel: its payload is empty, "look at the outbox now".
CHANNEL = "realchat_outbox"

#: Least time between two notifications of one chat process: under load a notification per
#: commit would cost PostgreSQL a transaction per batch, while the publisher, busy anyway, gains
#: nothing from them; an idle stack's notification still goes at once.
MIN_INTERVAL_S = 0.002

#: Pause before the listener connects again after losing its connection.
RELISTEN_S = 1.0


class CommitNotifier:
    """Called after each commit that wrote outbox events; never blocks the caller."""

    def __init__(self, pool: asyncpg.Pool, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self._pool = pool
        self._min_interval_s = min_interval_s
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def __call__(self) -> None:
        if self._task is not None:
            self._again = True  # the notification in flight may have been read already
            return
        self._task = asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        try:
            self._again = True
            while self._again:
                self._again = False
                sent_at = time.monotonic()
                try:
                    await self._pool.execute("SELECT pg_notify($1, '')", CHANNEL)
                except DATABASE_ERRORS as exc:
                    log.debug("outbox wake-up not sent; the poll will find it", error=repr(exc))
                    return
                await asyncio.sleep(max(0.0, sent_at + self._min_interval_s - time.monotonic()))
        finally:
            self._task = None

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class WakeupListener:
    """Holds one pooled connection LISTENing on `CHANNEL` and sets `woken` on each notification;
    reconnects after losing it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.woken = asyncio.Event()

    def _on_notification(self, *_: object) -> None:
        self.woken.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with self._pool.acquire() as conn:
                    await self._listen(conn, stop)
            except DATABASE_ERRORS as exc:
                log.warning("outbox wake-up listener lost its connection", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=RELISTEN_S)

    async def _listen(self, conn: Connection, stop: asyncio.Event) -> None:
        """Until `stop`, or until the connection is lost."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        await conn.add_listener(CHANNEL, self._on_notification)
        # Events committed before LISTEN took effect: look once.
        self.woken.set()
        await _first(stop.wait(), lost.wait())
        if not lost.is_set():
            await conn.remove_listener(CHANNEL, self._on_notification)


async def _first(*waits: Coroutine[Any, Any, object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
