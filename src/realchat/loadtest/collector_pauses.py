"""The load generator's own pauses for Python's cycle collector, reported beside its latencies.

A generator stopped by a full collection reads its frames late and counts the wait as the
stack's latency. Each worker therefore freezes what it built while connecting (`gc.freeze`: its
clients live for the whole run, so walking them again and again finds nothing to free) and
reports the longest collection of every tick, so a latency spike that is the generator's own
shows as such in the timeline (`worker_gc_pause_ms`)."""

from __future__ import annotations

import gc
import time
from typing import Any


class CollectorPauses:
    """The longest cycle collection since the last `take`, in milliseconds."""

    def __init__(self) -> None:
        self._started = 0.0
        self._longest_s = 0.0

    def install(self) -> None:
        gc.callbacks.append(self._on_collection)

    def uninstall(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def take(self) -> float:
        longest, self._longest_s = self._longest_s, 0.0
        return round(longest * 1000, 1)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
        else:
            self._longest_s = max(self._longest_s, now - self._started)
