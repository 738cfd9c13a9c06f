"""Running a long-lived RealChat process: uvloop, a crash that leaves its traceback, and
SIGTERM/SIGINT turned into a stop event that the process's main coroutine drains on."""

from __future__ import annotations

import asyncio
import faulthandler
import signal
from collections.abc import Awaitable, Callable

import uvloop

#: `kill -USR2 <pid>` makes a running service write every thread's stack to its log, without
#: stopping it (SIGUSR1 stays free: HAProxy and others use it for their own purposes).
DUMP_STACKS_SIGNAL = signal.SIGUSR2


def enable_crash_tracebacks() -> None:
    """A crash in a C extension (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) writes the Python
    traceback of every thread to stderr, the service's log, before the process dies of it: the
    log then says where it died, where it otherwise ends without a word."""
    faulthandler.enable(all_threads=True)
    faulthandler.register(DUMP_STACKS_SIGNAL, all_threads=True, chain=False)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    enable_crash_tracebacks()

    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    uvloop.run(wrapper())
    return 0
