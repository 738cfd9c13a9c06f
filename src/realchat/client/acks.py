"""The acks a client owes the server: the highest seq handed to the application per
conversation, sent once each, and again on the next connection when a write failed."""

from __future__ import annotations

import asyncio

from realchat.client.connection import Link, LinkClosed
from realchat.contract.frames import AckFrame


class Acks:
    def __init__(self) -> None:
        self._wanted: dict[str, int] = {}
        self._sent: dict[str, int] = {}
        #: Set when an ack is wanted or a connection went live: the ack task sends.
        self.wake = asyncio.Event()

    def want(self, conversation_id: str, seq: int) -> None:
        if seq > self._wanted.get(conversation_id, 0):
            self._wanted[conversation_id] = seq

    async def flush(self, link: Link | None) -> None:
        """Send what is wanted and not sent yet on `link` (None: not live, sent later)."""
        if link is None:
            return
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
