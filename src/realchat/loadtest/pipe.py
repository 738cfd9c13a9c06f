"""How a load tool's worker process talks with its coordinator: JSON lines, commands on stdin,
answers and progress on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


def emit(record: dict[str, Any] | msgspec.Struct) -> None:
    sys.stdout.write(msgspec.json.encode(record).decode() + "\n")
    sys.stdout.flush()


async def read_commands() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


class Commands:
    """The coordinator's command lines. Its end of the pipe closing (it exited, or was killed)
    reads as b"": a worker must not outlive it, not even in the middle of an hour-long phase."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._next: asyncio.Task[bytes] | None = None

    def _pending(self) -> asyncio.Task[bytes]:
        if self._next is None:
            self._next = asyncio.ensure_future(self._reader.readline())
        return self._next

    async def next(self) -> bytes:
        """The next command line; b"" once the coordinator is gone."""
        line = self._pending()
        self._next = None
        return await line

    async def unless_gone(self, work: Coroutine[Any, Any, T]) -> tuple[bool, T | None]:
        """Run `work` unless the coordinator goes away meanwhile (then it is cancelled):
        (finished, its result). A command arriving meanwhile waits for `next`."""
        job = asyncio.ensure_future(work)
        line = self._pending()
        await asyncio.wait({job, line}, return_when=asyncio.FIRST_COMPLETED)
        if not job.done() and line.done() and line.result() == b"":
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
            return False, None
        return True, await job
