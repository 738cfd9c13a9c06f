"""A worker's command pipe: the coordinator going away ends whatever the worker was doing."""

from __future__ import annotations

import asyncio

from realchat.loadtest.pipe import Commands


async def test_work_is_cancelled_when_the_coordinator_goes_away() -> None:
    reader = asyncio.StreamReader()
    commands = Commands(reader)
    cancelled = asyncio.Event()

    async def hour_long_phase() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "done"

    asyncio.get_running_loop().call_later(0.05, reader.feed_eof)
    finished, result = await asyncio.wait_for(commands.unless_gone(hour_long_phase()), 5)
    assert (finished, result) == (False, None)
    assert cancelled.is_set()
    assert await commands.next() == b""


async def test_work_finishes_and_a_command_sent_meanwhile_is_kept() -> None:
    reader = asyncio.StreamReader()
    commands = Commands(reader)

    async def phase() -> str:
        await asyncio.sleep(0.1)
        return "result"

    reader.feed_data(b'{"cmd":"exit"}\n')
    assert await commands.unless_gone(phase()) == (True, "result")
    assert await commands.next() == b'{"cmd":"exit"}\n'
    reader.feed_eof()
    assert await commands.next() == b""
