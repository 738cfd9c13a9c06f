"""What a path is measured in: the run's context, and the closed loop every path of ours runs
(each caller sends its next message as soon as the last one is answered)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from realchat.config import Settings
from realchat.loadtest.bench_write.results import PathResult, Sample, Window, window_result
from realchat.loadtest.bench_write.scenarios import (
    CONVERSATION_PREFIX,
    USER_PREFIX,
    Scenario,
    indexed_uuid,
)
from realchat.stack.supervisor import Stack

Reporter = Callable[[str], None]

#: Send one message as caller `worker` to the conversation with index `conversation`.
SendOne = Callable[[int, int], Awaitable[None]]


@dataclass
class _Tally:
    samples: list[Sample]
    errors: int = 0
    first_error: str | None = None


async def closed_loop(
    send: SendOne, *, workers: int, conversations: int, warmup_s: float, seconds: float
) -> tuple[_Tally, Window]:
    """`workers` callers, each sending its next message as soon as the last one is answered,
    until the measurement window closes."""
    window = Window.after_warmup(time.time(), warmup_s, seconds)
    tally = _Tally(samples=[])

    async def caller(worker: int) -> None:
        rng = random.Random(worker)
        while time.time() < window.end:
            began = time.perf_counter()
            try:
                await send(worker, rng.randrange(conversations))
            except Exception as exc:  # counted and reported, the run goes on
                tally.errors += 1
                tally.first_error = tally.first_error or repr(exc)
                continue
            latency_ms = (time.perf_counter() - began) * 1000
            tally.samples.append(Sample(completed_at=time.time(), latency_ms=latency_ms))

    await asyncio.gather(*(caller(w) for w in range(workers)))
    return tally, window


@dataclass(frozen=True)
class BenchContext:
    stack: Stack
    dsn: str
    concurrency: int
    seconds: float
    warmup_s: float
    workdir: Path
    report: Reporter
    #: The PostgreSQL server process, whose process tree is the `postgres` CPU role.
    postmaster: int
    #: role -> pid of the processes of the path being measured (filled as they start).
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.stack.app_settings

    @property
    def users(self) -> list[uuid.UUID]:
        return [indexed_uuid(USER_PREFIX, i) for i in range(self.concurrency)]

    def conversation_ids(self, scenario: Scenario) -> list[str]:
        return [str(indexed_uuid(CONVERSATION_PREFIX, i)) for i in range(scenario.conversations)]


async def drive(ctx: BenchContext, path: str, scenario: Scenario, send: SendOne) -> PathResult:
    tally, window = await closed_loop(
        send,
        workers=ctx.concurrency,
        conversations=scenario.conversations,
        warmup_s=ctx.warmup_s,
        seconds=ctx.seconds,
    )
    return window_result(path, tally.samples, window, tally.errors, tally.first_error)
