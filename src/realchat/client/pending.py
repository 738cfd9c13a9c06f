"""A send awaiting its reply: what was written where, who waits, and the backoff of its re-sends
after `rate_limited` (the server refused it before storing anything)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from realchat.backoff import Backoff
from realchat.client.connection import Link
from realchat.contract.frames import Message, SendFrame

#: Re-send delays of a rate-limited send: from 0.1 s doubling to 2 s, jittered.
RATE_LIMITED_RETRY_INITIAL_S = 0.1
RATE_LIMITED_RETRY_MAX_S = 2.0


@dataclass
class PendingSend:
    frame: SendFrame
    reply: asyncio.Future[Message]
    #: The WebSocket it was last written to (None: not written yet).
    link: Link | None = None
    #: `send()` calls waiting for it (the same send may be awaited twice).
    waiters: int = 0
    #: When the server first answered `rate_limited`, and the delays of the re-sends since.
    limited_since: float | None = None
    limited_backoff: Backoff | None = None

    def rate_limited(self, now: float, give_up_after_s: float) -> float | None:
        """The server answered `rate_limited`: how long to wait before writing it again, or
        None once `give_up_after_s` have passed since the first such answer."""
        if self.limited_since is None or self.limited_backoff is None:
            self.limited_since = now
            self.limited_backoff = Backoff(RATE_LIMITED_RETRY_INITIAL_S, RATE_LIMITED_RETRY_MAX_S)
        if now - self.limited_since >= give_up_after_s:
            return None
        self.link = None  # not written (successfully) on any link now
        return self.limited_backoff.next_delay()
