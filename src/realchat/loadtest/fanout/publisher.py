"""The open-loop publisher: message k is due at k / rate seconds, whatever earlier ones took, so
a slow server shows up as latency at the receivers instead of as a lower rate.

Each payload is stamped with the monotonic clock just before its request starts; how far behind
schedule the publisher itself fell is reported beside the latencies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from realchat.loadtest.fanout.payload import stamp_now

#: (sequence number, payload) -> published, or raises.
Publish = Callable[[int, str], Awaitable[None]]
#: Requests in flight at most; beyond it the schedule slips (and `lag_max_ms` says by how much).
MAX_IN_FLIGHT = 200


@dataclass(frozen=True)
class Published:
    published: int
    errors: int
    first_error: str | None
    seconds: float
    lag_max_ms: float


async def open_loop(publish: Publish, tag: str, rate: float, seconds: float) -> Published:
    total = round(rate * seconds)
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    errors = 0
    first_error: str | None = None
    lag_max = 0.0

    async def one(seq: int) -> None:
        nonlocal errors, first_error
        try:
            await publish(seq, stamp_now(tag, seq))
        except Exception as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
        finally:
            gate.release()

    tasks = []
    started = time.monotonic()
    for seq in range(total):
        delay = started + seq / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await gate.acquire()
        lag_max = max(lag_max, time.monotonic() - (started + seq / rate))
        tasks.append(asyncio.create_task(one(seq)))
    await asyncio.gather(*tasks)
    return Published(
        published=total - errors,
        errors=errors,
        first_error=first_error,
        seconds=round(time.monotonic() - started, 3),
        lag_max_ms=round(lag_max * 1000, 1),
    )
