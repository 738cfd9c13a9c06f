"""Reconnect delays: exponential, capped, jittered, reset after a healthy connection."""

from __future__ import annotations

import pytest

from realchat.client.backoff import Backoff


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
