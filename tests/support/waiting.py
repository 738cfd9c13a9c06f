"""Waiting on external systems that offer no event to await: poll with a generous deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


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
