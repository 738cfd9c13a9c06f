"""Capped exponential backoff with jitter; the clock is passed in, so tests need no sleeping."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial_s: float
    max_s: float
    failures: int = 0
    not_before: float = 0.0
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def ready(self, now: float) -> bool:
        return now >= self.not_before

    def failed(self, now: float) -> float:
        """Record a failure; return the delay before the next attempt."""
        self.failures += 1
        ceiling = min(self.max_s, self.initial_s * 2.0 ** (self.failures - 1))
        delay: float = ceiling * (0.5 + self._random.random() / 2)  # "equal jitter"
        self.not_before = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.not_before = 0.0
