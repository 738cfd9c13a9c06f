"""Traffic for load-shaped e2e tests: REST floods, devices that time what they receive, and the
view of a careful client (highest contiguous seq, each message shown once)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from tests.support.client import Device, User, send_rest


async def flood(
    http: aiohttp.ClientSession,
    base: str,
    sender: User,
    conversation_id: str,
    count: int,
    content: Callable[[int], str],
    concurrency: int = 16,
) -> list[dict[str, Any]]:
    """`count` REST sends, `concurrency` at a time; the messages, in the order sent."""
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> dict[str, Any]:
        async with gate:
            return await send_rest(http, base, sender, conversation_id, content(n))

    return list(await asyncio.gather(*(one(n) for n in range(count))))


@dataclass
class TimedDevice(Device):
    """A device that also notes when each frame arrived (wall clock, like `created_at`)."""

    arrivals: list[float] = field(default_factory=list)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.arrivals.append(time.time())
                self.frames.append(msg.json())
                self.arrived.set()

    def latencies(self, conversation_id: str) -> list[float]:
        """Seconds from commit (`created_at`) to arrival, per message frame of a conversation."""
        return [
            at - datetime.fromisoformat(f["message"]["created_at"]).timestamp()
            for f, at in zip(self.frames, self.arrivals, strict=True)
            if f["type"] == "message" and f["message"]["conversation_id"] == conversation_id
        ]


async def connect_timed(http: aiohttp.ClientSession, base: str, user: User) -> TimedDevice:
    ws = await http.ws_connect(f"{base}/v1/ws?token={user.token}", heartbeat=None)
    device = TimedDevice(ws)
    device.reader = asyncio.create_task(device._read())
    await device.wait(lambda d: d.of_type("hello"), timeout_s=10)
    return device


def contiguous(seqs: Iterable[int], after: int = 0) -> list[int]:
    """What a careful client shows of the seqs it received, in order: each next seq once; a seq
    beyond a gap is not shown (a sync brings it again in order)."""
    shown: list[int] = []
    last = after
    for seq in seqs:
        if seq == last + 1:
            shown.append(seq)
            last = seq
    return shown


def percentiles(values: list[float], *points: int) -> dict[int, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {p: cuts[p - 1] for p in points}
