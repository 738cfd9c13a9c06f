"""A map that forgets: per-key state a gateway needs only for a while (the last presence version
applied, the last typing signal relayed), bounded by what was written recently.

Pure: the clock is passed in. Sweeps are lazy, so no timer runs: a read sweeps if the last sweep
was a tenth of `keep_s` ago or more, and the sweep drops every entry not written for `keep_s`.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class ExpiringMap(Generic[K, V]):
    def __init__(self, keep_s: float) -> None:
        self._keep_s = keep_s
        #: The value written per key, and when.
        self._entries: dict[K, tuple[V, float]] = {}
        self._next_sweep = 0.0

    def get(self, key: K, now: float) -> tuple[V, float] | None:
        """What was last written for `key` and when; None if nothing was or it was forgotten."""
        if now >= self._next_sweep:
            self._sweep(now)
        return self._entries.get(key)

    def put(self, key: K, value: V, now: float) -> None:
        self._entries[key] = (value, now)

    def __len__(self) -> int:
        return len(self._entries)

    def _sweep(self, now: float) -> None:
        horizon = now - self._keep_s
        self._entries = {k: entry for k, entry in self._entries.items() if entry[1] >= horizon}
        self._next_sweep = now + self._keep_s / 10
