"""Running a long-lived RealChat process: uvloop, and SIGTERM/SIGINT turned into a stop event
that the process's main coroutine drains on."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import uvloop


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    uvloop.run(wrapper())
    return 0
