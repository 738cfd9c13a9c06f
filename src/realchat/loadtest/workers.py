"""The coordinator's side of the load generator's worker processes: spawning them, their
configurations, and reading what they say (typed, `realchat.loadtest.messages`).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from yarl import URL

from realchat.loadtest.aggregation import Aggregate
from realchat.loadtest.messages import (
    Connection,
    SlowReading,
    Tick,
    WorkerConfig,
    WorkerUser,
    reply_decoder,
)
from realchat.loadtest.population import Population, ProvisioningError
from realchat.loadtest.scenarios import LoadConfig

R = TypeVar("R")


class LoadTestError(ProvisioningError):
    """The load test could not run; the message says why."""


#: What a worker's reader queues once the worker's output ends.
EXITED: dict[str, Any] = {"type": "exited"}


@dataclass
class WorkerHandle:
    """One worker process and the answers its reader task queued (`EXITED` last)."""

    index: int
    process: asyncio.subprocess.Process
    replies: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def spawn(cls, index: int, module: str, limit: int) -> WorkerHandle:
        """Worker `index`: `python -m <module>`, JSON lines in on stdin and out on stdout
        (`limit`: the longest line it may write)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=limit,
        )
        return cls(index, process)

    async def command(self, command: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(msgspec.json.encode(command) + b"\n")
        await self.process.stdin.drain()

    async def reply(self, kind: str, timeout_s: float) -> dict[str, Any]:
        """The next answer of type `kind` of a worker that answers in plain JSON objects."""
        answer: dict[str, Any] = await self._next(
            lambda record: isinstance(record, dict) and record.get("type") == kind,
            kind,
            timeout_s,
        )
        return answer

    async def answer(self, kind: type[R], timeout_s: float) -> R:
        """The next answer of type `kind` of a worker that answers in typed messages."""
        found: R = await self._next(
            lambda record: isinstance(record, kind), kind.__name__, timeout_s
        )
        return found

    async def _next(self, wanted: Callable[[Any], bool], kind: str, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoadTestError(f"worker {self.index}: no {kind} within {timeout_s:.0f} s")
            try:
                record = await asyncio.wait_for(self.replies.get(), left)
            except TimeoutError:
                continue
            if wanted(record):
                return record
            if record == EXITED:
                raise LoadTestError(f"worker {self.index} exited before {kind}")


async def _read_worker(handle: WorkerHandle, aggregate: Aggregate) -> None:
    """Ticks go to `aggregate`, answers to the handle's queue; a line that is not a message of
    the protocol is skipped."""
    assert handle.process.stdout is not None
    while line := await handle.process.stdout.readline():
        try:
            record = reply_decoder.decode(line)
        except msgspec.DecodeError:
            continue
        if isinstance(record, Tick):
            aggregate.on_tick(record)
        else:
            handle.replies.put_nowait(record)
    handle.replies.put_nowait(EXITED)


def worker_configs(config: LoadConfig, population: Population) -> list[WorkerConfig]:
    """Each worker's share of the connections (round robin), slow ones drawn from the seed."""
    rng = random.Random(config.seed + 1)
    users = population.users
    slow = set(rng.sample(range(config.connections), int(config.connections * config.slow_share)))
    assignments: list[list[Connection]] = [[] for _ in range(config.workers)]
    for n in range(config.connections):
        user = n % len(users)
        kind = "normal" if n not in slow else ("slow" if n % 2 else "stall")
        assignments[n % config.workers].append(Connection(str(user), f"d{n // len(users)}", kind))
    host = URL(config.base_url).host or "127.0.0.1"
    return [
        WorkerConfig(
            worker=w,
            base_url=config.base_url,
            ws_url=(config.ws_urls or [config.base_url])[w % max(1, len(config.ws_urls))],
            # Spread the source addresses: ~28k ephemeral ports per (source, destination).
            source_ip=f"127.0.0.{2 + w}" if host == "127.0.0.1" else None,
            slow=SlowReading(config.slow_read_delay_s, config.stall_s, config.stall_every_s),
            max_pending_per_connection=config.max_pending_per_connection,
            users={
                key: msgspec.convert(users[int(key)], WorkerUser)
                for key in {c.user for c in connections}
            },
            connections=connections,
            minting=population.minting,
        )
        for w, connections in enumerate(assignments)
    ]


async def start_workers(
    config: LoadConfig, population: Population, aggregate: Aggregate
) -> list[WorkerHandle]:
    """One process per worker configuration, its ticks feeding `aggregate`."""
    handles = []
    for worker_config in worker_configs(config, population):
        handle = await WorkerHandle.spawn(
            worker_config.worker, "realchat.loadtest.worker", limit=1 << 30
        )
        handle.reader = asyncio.create_task(_read_worker(handle, aggregate))
        await handle.command(worker_config)
        handles.append(handle)
    return handles
