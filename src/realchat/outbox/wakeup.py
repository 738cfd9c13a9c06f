"""Waking the outbox publisher when the chat service committed new events, so an event does not
wait out the publisher's poll interval.

Why not NOTIFY inside the write transaction: PostgreSQL serialises the commits of all
transactions that sent a notification (a global lock held through the commit's WAL flush), which
would undo group commit. Instead, the writer notifies *after* its commit, from a transaction of
its own that writes nothing (no WAL flush), at most one at a time per chat process, coalescing
the commits that happen meanwhile into the next one.

The notification names the outbox shards the commits wrote to, so a woken publisher goes to
them directly instead of first scanning the outbox for shards with pending rows (one round trip
less between a commit and its event's produce); an empty payload means "look everywhere".

Guarantee: best effort only. A lost notification (the listener reconnecting, PostgreSQL
restarting) delays events to the next poll, which stays the safety net; nothing is ever lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection, Coroutine
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from realchat.storage.pool import DATABASE_ERRORS

if TYPE_CHECKING:
    from realchat.storage.pool import Connection

log = structlog.get_logger(__name__)

#: The notification channel: its payload lists shards ("3,7"), or is empty: "look everywhere".
CHANNEL = "realchat_outbox"

#: Least time between two notifications of one chat process: under load a notification per
#: commit would cost PostgreSQL a transaction per batch, while the publisher, busy anyway, gains
#: nothing from them; an idle stack's notification still goes at once.
MIN_INTERVAL_S = 0.002

#: Pause before the listener connects again after losing its connection.
RELISTEN_S = 1.0


def encode_shards(shards: Collection[int]) -> str:
    return ",".join(str(s) for s in sorted(shards))


def decode_shards(payload: str) -> frozenset[int] | None:
    """The shards a notification names; None for "look everywhere" (empty, or not a list of
    shard numbers: a writer of another version)."""
    try:
        shards = frozenset(int(part) for part in payload.split(","))
    except ValueError:
        return None
    return shards if all(s >= 0 for s in shards) else None


class CommitNotifier:
    """Called after each commit that wrote outbox events, with the shards it wrote to (None:
    unknown); never blocks the caller. Commits made while a notification is on its way are
    announced together by the next one."""

    def __init__(self, pool: asyncpg.Pool, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self._pool = pool
        self._min_interval_s = min_interval_s
        self._task: asyncio.Task[None] | None = None
        #: Shards written since the last notification went out; `_everywhere`: some unknown.
        self._shards: set[int] = set()
        self._everywhere = False

    def __call__(self, shards: Collection[int] | None = None) -> None:
        if shards is None:
            self._everywhere = True
        else:
            self._shards.update(shards)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._notify())

    def _next_payload(self) -> str | None:
        """What the next notification says (None: nothing to announce); resets the pending."""
        if not (self._everywhere or self._shards):
            return None
        payload = "" if self._everywhere else encode_shards(self._shards)
        self._shards, self._everywhere = set(), False
        return payload

    async def _notify(self) -> None:
        try:
            while (payload := self._next_payload()) is not None:
                sent_at = time.monotonic()
                try:
                    await self._pool.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
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
    """Holds one pooled connection LISTENing on `CHANNEL` and sets `woken` on each notification,
    noting the shards it named (`take_hints`); reconnects after losing it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.woken = asyncio.Event()
        self._hinted: set[int] = set()
        #: Some notification named no shards (or events may have been missed): look everywhere.
        self._everywhere = True

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        shards = decode_shards(payload) if isinstance(payload, str) else None
        if shards is None:
            self._everywhere = True
        else:
            self._hinted.update(shards)
        self.woken.set()

    def take_hints(self) -> frozenset[int] | None:
        """The shards named since the last call; None when they may not be all (look
        everywhere)."""
        hinted = None if self._everywhere else frozenset(self._hinted)
        self._hinted, self._everywhere = set(), False
        return hinted

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
        # Events committed before LISTEN took effect: look once, everywhere.
        self._everywhere = True
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
