"""Read positions to tell the server (`ack` frames): the highest wanted per conversation, each
sent once per connection that takes it, and again on the next one if the link broke first."""

from __future__ import annotations

import asyncio
from typing import Protocol

from realchat.client.connection import LinkClosed
from realchat.contract.frames import AckFrame, ClientFrame


class FrameWriter(Protocol):
    """What acks go out through (a connection's `Link`)."""

    async def send(self, frame: ClientFrame) -> None: ...


class Acks:
    def __init__(self) -> None:
        self._wanted: dict[str, int] = {}
        self._sent: dict[str, int] = {}
        #: Set when there may be acks to send (the batching task waits on it).
        self.wake = asyncio.Event()

    def want(self, conversation_id: str, seq: int) -> None:
        """Ack up to `seq` (a lower one than already wanted changes nothing)."""
        if seq > self._wanted.get(conversation_id, 0):
            self._wanted[conversation_id] = seq

    async def flush(self, link: FrameWriter) -> None:
        """Send what is wanted and not sent yet; stop at a broken link (what it did not take is
        sent on the next one)."""
        for cid, seq in list(self._wanted.items()):
            before = self._sent.get(cid, 0)
            if before >= seq:
                continue
            self._sent[cid] = seq
            try:
                await link.send(AckFrame(cid, seq))
            except LinkClosed:
                self._sent[cid] = before
                return
