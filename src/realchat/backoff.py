"""Retry delays: exponential, capped, jittered; pure (the random source and the clock are passed
in, so tests need no sleeping).

One owner for every retry schedule: the SDK's reconnects and rate-limited re-sends, the outbox
publisher's shards, the notifier's webhook attempts. Standard library only: the SDK imports it
without any of the services' dependencies.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def delay_ceiling(step: int, initial_s: float, max_s: float, multiplier: float = 2.0) -> float:
    """`min(max_s, initial_s * multiplier**step)`: the longest delay before retry `step`
    (0-based); at the cap however many steps were counted (no float overflow)."""
    try:
        return float(min(max_s, initial_s * multiplier**step))
    except OverflowError:
        return float(max_s)


class Backoff:
    """Delay before attempt n (0-based, counted since the last `reset`):
    `delay_ceiling(n)`, scaled by a random factor in `[1 - jitter, 1]` so that many clients cut
    off at once (a gateway draining), or many shards failing at once, do not all come back at
    once.

    Two ways to use it: ask `next_delay()` and sleep it (a reconnect loop), or record `failed(now)`
    and poll `ready(now)` (a scheduler that must not sleep on one of many things to retry)."""

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
        #: With `failed`/`ready`: the clock reading before which no retry is due.
        self.not_before = 0.0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call is one more step up, until the cap."""
        ceiling = delay_ceiling(self.attempts, self.initial_s, self.max_s, self._multiplier)
        if ceiling < self.max_s:  # once at the cap, stop counting
            self.attempts += 1
        return ceiling * (1.0 - self._jitter * self._rng())

    def reset(self) -> None:
        """It worked: the next failure starts again from `initial_s`."""
        self.attempts = 0
        self.not_before = 0.0

    def failed(self, now: float) -> float:
        """Record a failure at clock reading `now`; return the delay before the next attempt."""
        delay = self.next_delay()
        self.not_before = now + delay
        return delay

    def ready(self, now: float) -> bool:
        """Whether a retry is due at clock reading `now`."""
        return now >= self.not_before
