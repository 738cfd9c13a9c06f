"""Waiting on external systems that offer no event to await: poll with a generous deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.25
) -> bool:
    """True as soon as `predicate()` holds; False if it never did within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval_s)
    return True


async def eventually_async(
    probe: Callable[[], Awaitable[T]], until: Callable[[T], bool], timeout_s: float
) -> T:
    """Poll an async probe until its value satisfies `until`; return the last value seen."""
    deadline = time.monotonic() + timeout_s
    value = await probe()
    while not until(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        value = await probe()
    return value
