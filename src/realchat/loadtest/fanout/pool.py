"""The client worker processes of one block of a run, seen from the coordinator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import msgspec
from hdrh.histogram import HdrHistogram

from realchat.loadtest.fanout.client import ClientConfig, Spec
from realchat.loadtest.fanout.plan import deal, shares
from realchat.loadtest.histograms import new_histogram
from realchat.loadtest.workers import EXITED, WorkerHandle

#: Opening a step of connections (each one through its handshake) may take this long.
OPEN_TIMEOUT_S = 600.0
ANSWER_TIMEOUT_S = 30.0


async def _read_replies(handle: WorkerHandle) -> None:
    assert handle.process.stdout is not None
    while line := await handle.process.stdout.readline():
        with contextlib.suppress(msgspec.DecodeError):
            await handle.replies.put(msgspec.json.decode(line))
    await handle.replies.put(EXITED)


class ClientPool:
    """`workers` processes holding `specs` between them; every command goes to all of them."""

    def __init__(
        self,
        kind: str,
        channel: str,
        specs: Sequence[Spec],
        workers: int,
        module: str = "realchat.loadtest.fanout.client",
    ) -> None:
        """`module`: the worker program (`python -m module`), speaking `client.py`'s lines."""
        self.kind = kind
        self.module = module
        self.channel = channel
        self.dealt = deal(specs, workers)
        self.handles: list[WorkerHandle] = []

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(h.process.pid for h in self.handles)

    async def start(self) -> None:
        for index, specs in enumerate(self.dealt):
            handle = await WorkerHandle.spawn(index, self.module, 1 << 26)
            handle.reader = asyncio.create_task(_read_replies(handle))
            await handle.command(ClientConfig(self.kind, self.channel, specs))
            self.handles.append(handle)

    async def _all(
        self, commands: Sequence[dict[str, Any]], kind: str, timeout_s: float
    ) -> list[dict[str, Any]]:
        for handle, command in zip(self.handles, commands, strict=True):
            await handle.command(command)
        return list(await asyncio.gather(*(h.reply(kind, timeout_s) for h in self.handles)))

    async def open(self, count: int) -> dict[str, Any]:
        """`count` more connections, split over the workers; totals of what is open now."""
        split = shares(count, len(self.handles))
        answers = await self._all(
            [{"cmd": "open", "count": n} for n in split], "opened", OPEN_TIMEOUT_S
        )
        return _totals(answers)

    async def count(self, tag: str, timeout_s: float = ANSWER_TIMEOUT_S) -> int:
        answers = await self._all(
            [{"cmd": "count", "tag": tag}] * len(self.handles), "count", timeout_s
        )
        return sum(int(a["received"]) for a in answers)

    async def report(self, tag: str) -> tuple[int, HdrHistogram, dict[str, Any]]:
        """Deliveries of `tag`, their merged latency histogram and the connections' status."""
        answers = await self._all(
            [{"cmd": "report", "tag": tag}] * len(self.handles), "report", ANSWER_TIMEOUT_S
        )
        merged = new_histogram()
        for answer in answers:
            if answer["hist"]:
                merged.decode_and_add(answer["hist"])
        return sum(int(a["received"]) for a in answers), merged, _totals(answers)

    async def close(self) -> None:
        for handle in self.handles:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await handle.command({"cmd": "close"})
        for handle in self.handles:
            try:
                await asyncio.wait_for(handle.process.wait(), 60)
            except TimeoutError:
                handle.process.kill()
                await handle.process.wait()
            if handle.reader is not None:
                handle.reader.cancel()
        self.handles = []


def _totals(answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    errors = [a["first_error"] for a in answers if a.get("first_error")]
    return {
        "open": sum(int(a["open"]) for a in answers),
        "failed": sum(int(a["failed"]) for a in answers),
        "dropped": sum(int(a["dropped"]) for a in answers),
        "first_error": errors[0] if errors else None,
    }
