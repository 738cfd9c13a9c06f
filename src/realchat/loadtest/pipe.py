"""How a load tool's worker process talks with its coordinator: JSON lines, commands on stdin,
answers and progress on stdout."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import msgspec


def emit(record: dict[str, Any] | msgspec.Struct) -> None:
    sys.stdout.write(msgspec.json.encode(record).decode() + "\n")
    sys.stdout.flush()


async def read_commands() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader
