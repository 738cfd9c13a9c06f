"""Live delivery's state, told to every connection: current, or paused while the bus is away.

The outbox exists so that writes never depend on the bus. A gateway whose consumer lost its
partitions (a broker outage outlasting the session timeout) therefore stays ready: sends, history
and `sync` need only the chat service. What stops is live delivery, so every connection is told
(`{"type": "live", "paused": true}`) and can sync now and then; when the partitions come back the
consumer resumes from its committed offsets, nothing is skipped, and the connections are told
again (`paused: false`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from realchat.contract.frames import LiveFrame, encode
from realchat.gateway import metrics
from realchat.gateway.hub import Hub
from realchat.gateway.wsframe import text_frame

log = structlog.get_logger(__name__)

PAUSED = text_frame(encode(LiveFrame(paused=True)))
RESUMED = text_frame(encode(LiveFrame(paused=False)))


class LiveStatus:
    """Watches `is_current` (the consumer holds partitions) and tells the hub's connections when
    it changes. A pure transition core (`observe`) under a polling loop (`run`)."""

    def __init__(self, hub: Hub, is_current: Callable[[], bool]) -> None:
        self._hub = hub
        self._is_current = is_current
        self.paused = False

    def observe(self, current: bool) -> bytes | None:
        """The frame to tell every connection, if live delivery just paused or resumed."""
        if current == (not self.paused):
            return None
        self.paused = not current
        metrics.LIVE_PAUSED.set(int(self.paused))
        if self.paused:
            log.warning("live delivery paused: the consumer holds no partitions")
        else:
            log.info("live delivery resumed")
        return PAUSED if self.paused else RESUMED

    def greeting(self) -> bytes | None:
        """What a connection opened while paused is told right after its hello."""
        return PAUSED if self.paused else None

    async def run(self, interval_s: float = 0.5) -> None:
        while True:
            await asyncio.sleep(interval_s)
            frame = self.observe(self._is_current())
            if frame is not None:
                for connection in list(self._hub.all_connections()):
                    connection.push_frame(frame)
