"""Retry delays: exponential, capped, jittered, reset after a success; the same schedule for the
SDK's reconnects, the outbox publisher's shards and the notifier's webhook attempts."""

from __future__ import annotations

import random

import pytest

from realchat.backoff import Backoff, delay_ceiling


def test_delays_double_up_to_the_cap_and_reset() -> None:
    backoff = Backoff(0.5, 4.0, jitter=0.5, rng=lambda: 0.0)  # no jitter drawn: the ceilings
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_jitter_scales_each_delay_down_by_at_most_the_jitter_fraction() -> None:
    assert Backoff(1.0, 8.0, jitter=0.5, rng=lambda: 1.0).next_delay() == 0.5
    assert Backoff(1.0, 8.0, jitter=0.25, rng=lambda: 1.0).next_delay() == 0.75
    backoff = Backoff(1.0, 8.0)
    for ceiling in (1.0, 2.0, 4.0, 8.0, 8.0):
        assert ceiling / 2 <= backoff.next_delay() <= ceiling


def test_many_failures_stay_at_the_cap() -> None:
    backoff = Backoff(0.1, 30.0, rng=lambda: 0.0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 30.0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(5.0, 1.0)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(1.0, 2.0, jitter=2.0)


def test_backoff_grows_exponentially_to_its_cap_and_resets() -> None:
    backoff = Backoff(initial_s=0.1, max_s=1.0, rng=random.Random(7).random)
    delays = [backoff.failed(now=100.0) for _ in range(8)]
    ceilings = [min(1.0, 0.1 * 2**i) for i in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert not backoff.ready(100.0)
    assert backoff.ready(100.0 + 1.0)
    backoff.reset()
    assert backoff.ready(0.0)
    assert backoff.failed(now=0.0) <= 0.1


def test_the_ceiling_stays_at_the_cap_however_many_steps() -> None:
    assert [delay_ceiling(n, 1.0, 10.0) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert delay_ceiling(5000, 1.0, 10.0) == 10.0
