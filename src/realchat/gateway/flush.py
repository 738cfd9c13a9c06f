"""One write per connection per event-loop iteration, for every connection with frames waiting.

A delivery appends its ready frame to the connection's pending list and, the first time in an
iteration, puts the connection on this list: no task wakes up, no callback is scheduled per
delivery. One callback per iteration then hands each dirty connection's frames to its socket in
a single write, so several events for one client in a burst cost one syscall (and one frame
relay at a balancer), the way Centrifuge's writer batches a client's messages.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from realchat.gateway import metrics

log = structlog.get_logger(__name__)


class Flushable(Protocol):
    def flush(self) -> None:
        """Write what waits, if the socket takes it now (else leave it to the drain)."""
        ...


class Flusher:
    """The per-iteration write of every connection of one event loop (one per gateway)."""

    __slots__ = ("_dirty", "written")

    def __init__(self) -> None:
        self._dirty: list[Flushable] = []
        #: Frames handed to sockets since the last round: the metric is updated once per round.
        self.written = 0

    def mark(self, connection: Flushable) -> None:
        """`connection` has frames waiting: flush it at the end of this iteration."""
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self._flush_all)
        self._dirty.append(connection)

    def _flush_all(self) -> None:
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            try:
                connection.flush()
            except Exception as exc:  # one broken socket must not keep the others' frames
                log.error("flush failed", error=repr(exc))
        if self.written:
            metrics.FRAMES_SENT.inc(self.written)
            self.written = 0
