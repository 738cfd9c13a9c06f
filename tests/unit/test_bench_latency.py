"""`realchat bench latency`'s pure core: a message's moments, its stages and the verdict."""

from __future__ import annotations

import pytest

from realchat.loadtest.latency.run import content_of, number_in
from realchat.loadtest.latency.trips import (
    STAGES,
    Trip,
    render,
    stage_ms,
    summarize_trips,
    with_moments,
)


def full_trip(n: int, total_ms: float) -> Trip:
    """A trip whose five stages split `total_ms` in equal parts, starting at second 100."""
    step = total_ms / 5 / 1000
    return Trip(
        n=n,
        sent=100.0,
        statement=100.0 + step,
        row=100.0 + 2 * step,
        produced=100.0 + 3 * step,
        on_bus=100.0 + 4 * step,
        delivered=100.0 + 5 * step,
        acked=100.0 + 2.5 * step,
        marked=100.0 + 4.5 * step,
    )


def test_the_stages_of_a_fully_observed_trip_add_up_to_send_to_delivery() -> None:
    trip = full_trip(0, 10.0)
    parts = [stage_ms(trip, start, end) for _, start, end in STAGES]
    total = stage_ms(trip, "sent", "delivered")
    assert all(p is not None for p in parts)
    assert total == pytest.approx(10.0)
    assert sum(p for p in parts if p is not None) == pytest.approx(total)


def test_a_stage_with_a_missing_moment_is_left_out_not_counted_as_zero() -> None:
    trips = [full_trip(0, 10.0), replace_none(full_trip(1, 20.0), "on_bus")]
    result = summarize_trips(trips)
    kafka = next(s for s in result.stages if s.name.startswith("produce ->"))
    assert kafka.samples == 1
    assert kafka.latency is not None
    assert kafka.latency.max_ms == pytest.approx(2.0)
    assert result.send_to_delivery is not None
    assert result.send_to_delivery.max_ms == pytest.approx(20.0)


def replace_none(trip: Trip, moment: str) -> Trip:
    return Trip(**{**trip.__dict__, moment: None})


def test_the_target_is_met_only_within_both_percentiles_and_with_nothing_lost() -> None:
    fast = [full_trip(n, 5.0) for n in range(19)]
    assert summarize_trips([*fast, full_trip(19, 15.0)]).met
    # p95 of 20 messages is the 19th: two slow ones put it past 20 ms.
    assert not summarize_trips([*fast[:18], full_trip(18, 25.0), full_trip(19, 25.0)]).met
    assert not summarize_trips([full_trip(n, 12.0) for n in range(20)]).met
    lost = Trip(n=20, sent=100.0, acked=100.001)
    assert not summarize_trips([*fast, lost]).met


def test_a_message_never_delivered_counts_as_lost_and_out_of_the_percentiles() -> None:
    lost = Trip(n=1, sent=100.0, acked=100.002)
    result = summarize_trips([full_trip(0, 8.0), lost])
    assert result.lost == 1
    assert result.send_to_delivery is not None
    assert result.send_to_delivery.max_ms == pytest.approx(8.0)
    assert "1 lost" in render(result)


def test_moments_given_as_none_leave_the_known_ones() -> None:
    trip = with_moments(Trip(n=0, sent=1.0, acked=1.5), acked=None, delivered=2.0)
    assert (trip.acked, trip.delivered) == (1.5, 2.0)


def test_message_numbers_are_read_back_from_this_runs_content_only() -> None:
    assert number_in("run1", content_of("run1", 42)) == 42
    assert number_in("run1", content_of("run2", 42)) is None
    assert number_in("run1", "hello") is None
    assert number_in("run1", content_of("run1", 4) + "x") is None
