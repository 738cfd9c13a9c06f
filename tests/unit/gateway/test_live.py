"""Live delivery's state (gateway/live.py): told once per change, to every connection, and to
connections that open while it is paused."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from realchat.contract.frames import LiveFrame
from realchat.gateway.hub import Hub
from realchat.gateway.live import PAUSED, RESUMED, LiveStatus


def payload(frame: bytes) -> LiveFrame:
    """The JSON of a server-to-client text frame of under 126 bytes (2-byte header)."""
    assert frame[0] == 0x81
    return msgspec.json.decode(frame[2:], type=LiveFrame)


def test_each_change_is_told_once() -> None:
    status = LiveStatus(Hub(4), lambda: True)
    assert status.observe(True) is None  # current from the start: nothing to say
    assert status.greeting() is None
    assert status.observe(False) == PAUSED
    assert status.observe(False) is None
    assert status.greeting() == PAUSED
    assert status.observe(True) == RESUMED
    assert status.observe(True) is None
    assert status.greeting() is None
    assert payload(PAUSED) == LiveFrame(paused=True)
    assert payload(RESUMED) == LiveFrame(paused=False)


class Recorder:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.told = asyncio.Event()

    def push_frame(self, frame: bytes) -> bool:
        self.frames.append(frame)
        self.told.set()
        return True

    async def next_frame(self) -> bytes:
        async with asyncio.timeout(5):
            await self.told.wait()
        self.told.clear()
        return self.frames[-1]


class FakeHub:
    def __init__(self, connections: list[Recorder]) -> None:
        self.connections = connections

    def all_connections(self) -> list[Recorder]:
        return self.connections


@pytest.mark.asyncio(loop_scope="session")
async def test_every_connection_is_told_when_the_consumer_loses_and_regains_the_bus() -> None:
    connections = [Recorder(), Recorder()]
    current = [True]
    status = LiveStatus(FakeHub(connections), lambda: current[0])  # type: ignore[arg-type]
    watcher = asyncio.create_task(status.run(interval_s=0.01))
    try:
        current[0] = False
        assert [await c.next_frame() for c in connections] == [PAUSED, PAUSED]
        current[0] = True
        assert [await c.next_frame() for c in connections] == [RESUMED, RESUMED]
    finally:
        watcher.cancel()
    assert [c.frames for c in connections] == [[PAUSED, RESUMED]] * 2
