"""Group commit: concurrent sends gathered into few transactions, each send awaiting its own
outcome.

Why: one transaction per message caps the write path at one WAL flush per message on a hot
conversation (its row lock is held through the flush) and spends the CPU on per-statement work
elsewhere. A batch costs one statement and one flush for all its sends.

When a batch starts (the linger never delays an idle service):
- nothing in flight: at once, with whatever is queued; an idle service's send goes alone, written
  in its caller's task;
- otherwise, when `max_batch` sends wait, the oldest waiting send has waited `linger_s`, or a
  gathered call's sends arrive (`submit_many`), as long as fewer than `max_inflight` batches
  are in flight. Sends that arrive while a commit is in flight so form the next batch. Several
  batches in flight keep one batch that waits on a row lock from holding up sends to other
  conversations.

The same batcher gathers the gateway's sends into SendMessageBatch calls (`gateway/chat_client.py`):
there the "write" is one call carrying many sends.

Guarantees: each send gets the outcome the write function gave it, or the exception that failed
its batch (a send never waits forever for a batch that crashed). A send whose caller went away
before its batch started is dropped; once started, it is written anyway (its retry with the same
client_msg_id finds it). The queue has no bound of its own: every waiting send is an RPC whose
caller awaits it, so it is bounded by the RPCs the server admits.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class GroupCommitLimits:
    #: Most sends in one batch (one statement, one transaction).
    max_batch: int = 256
    #: Longest a waiting send is held back, while a batch is in flight, hoping for company.
    linger_s: float = 0.002
    #: Batches (transactions, pool connections) in flight at once.
    max_inflight: int = 4


#: Writes a batch; returns one outcome per item, in order.
WriteBatch = Callable[[Sequence[T]], Awaitable[Sequence[R]]]


def _unobserved(size: int) -> None:
    pass


@dataclass(frozen=True)
class _Waiting(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    queued_at: float


class GroupCommitter(Generic[T, R]):
    def __init__(
        self,
        write: WriteBatch[T, R],
        limits: GroupCommitLimits,
        observe_size: Callable[[int], None] = _unobserved,
    ) -> None:
        self._write = write
        self._limits = limits
        self._observe_size = observe_size
        self._queue: deque[_Waiting[T, R]] = deque()
        self._inflight: set[asyncio.Task[None]] = set()
        #: Batches of one written in their sender's own task (see `submit`).
        self._alone = 0
        #: Set whenever a batch ends (what `drain` waits for).
        self._ended = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def inflight(self) -> int:
        return len(self._inflight) + self._alone

    async def submit(self, item: T) -> R:
        """Queue `item` for the next batch and wait for its outcome."""
        if self.inflight == 0 and not self._queue:
            return (await self._write_alone([item]))[0]
        future = self._enqueue([item])[0]
        return await future

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """Queue `items` (in order, together) and wait for all their outcomes; raises the
        exception that failed a batch holding one of them. Sends that come together (a
        gateway's call) are a batch already: they start as soon as a batch slot is free, with
        whatever else waits, instead of lingering for company."""
        if not items:
            return []
        if self.inflight == 0 and not self._queue and len(items) <= self._limits.max_batch:
            return await self._write_alone(items)
        futures = self._enqueue(items, linger=False)
        outcomes: list[R] = []
        failure: BaseException | None = None
        try:
            # One by one (not asyncio.wait, whose per-future checks showed in profiles): every
            # outcome is awaited, so no failure goes unretrieved.
            for future in futures:
                try:
                    outcomes.append(await future)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failure = failure or exc
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        if failure is not None:
            raise failure
        return outcomes

    def _enqueue(self, items: Sequence[T], *, linger: bool = True) -> list[asyncio.Future[R]]:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures: list[asyncio.Future[R]] = [loop.create_future() for _ in items]
        self._queue.extend(_Waiting(i, f, now) for i, f in zip(items, futures, strict=True))
        self._dispatch(linger=linger)
        return futures

    async def _write_alone(self, items: Sequence[T]) -> list[R]:
        """An idle batcher's sends: written at once, in the caller's task (no hand-over to a
        batch task and back); sends that arrive meanwhile queue for the next batch."""
        self._alone += 1
        try:
            self._observe_size(len(items))
            outcomes = await self._write(items)
            if len(outcomes) != len(items):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(items)}")
            return list(outcomes)
        finally:
            self._alone -= 1
            self._ended.set()
            self._dispatch()

    async def drain(self) -> None:
        """Wait until every queued send is written (on shutdown, after the RPCs stopped: a send
        written in its caller's task is awaited by that RPC)."""
        while self._queue or self.inflight:
            self._ended.clear()
            self._dispatch()
            if self.inflight:
                await self._ended.wait()

    def _dispatch(self, *, linger: bool = True) -> None:
        """Start what may start now; else arm the linger timer for when it may."""
        limits = self._limits
        while self._queue and self.inflight < limits.max_inflight:
            if linger and self.inflight and len(self._queue) < limits.max_batch:
                due = self._queue[0].queued_at + limits.linger_s
                wait = due - time.monotonic()
                if wait > 0:
                    self._arm(wait)
                    return
            self._start()

    def _arm(self, delay: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _start(self) -> None:
        batch: list[_Waiting[T, R]] = []
        while self._queue and len(batch) < self._limits.max_batch:
            waiting = self._queue.popleft()
            if not waiting.future.done():  # its caller went away: nothing to write
                batch.append(waiting)
        if not batch:
            return
        # In a context of its own: the batch belongs to none of its senders' traces.
        task = asyncio.get_running_loop().create_task(
            self._commit(batch), context=contextvars.Context()
        )
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._ended.set()
        self._dispatch()

    async def _commit(self, batch: list[_Waiting[T, R]]) -> None:
        self._observe_size(len(batch))
        try:
            outcomes = await self._write([w.item for w in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.future.cancel()
            raise
        except Exception as exc:  # the batch's failure is each of its sends' failure
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(outcome)
