"""Reconnect delays: exponential, capped, jittered; pure (the random source is passed in)."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delay before reconnect attempt n (0-based, counted since the last `reset`):
    `min(max_s, initial_s * multiplier**n)`, scaled by a random factor in `[1 - jitter, 1]` so
    that many clients cut off at once (a gateway draining) do not all come back at once."""

    def __init__(
        self,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        *,
        multiplier: float = 2.0,
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError("need 0 < initial_s <= max_s")
        if multiplier < 1 or not 0 <= jitter <= 1:
            raise ValueError("need multiplier >= 1 and 0 <= jitter <= 1")
        self.initial_s = initial_s
        self.max_s = max_s
        self._multiplier = multiplier
        self._jitter = jitter
        self._rng = rng
        self.attempts = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call is one more step up, until the cap."""
        ceiling = min(self.max_s, self.initial_s * self._multiplier**self.attempts)
        if ceiling < self.max_s:  # once at the cap, stop counting (no float overflow)
            self.attempts += 1
        return ceiling * (1.0 - self._jitter * self._rng())

    def reset(self) -> None:
        """A connection was healthy: the next failure starts again from `initial_s`."""
        self.attempts = 0
