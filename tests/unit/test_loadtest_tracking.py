"""The load test's correctness checks detect what they claim to: loss, order violations,
duplicates, a seq given to two messages, a send stored twice."""

from __future__ import annotations

import gc

from realchat.loadtest.tracking import ClientTracker, MessageRegistry


def test_contiguous_positions_and_loss() -> None:
    tracker = ClientTracker(["c"])
    tracker.start_session()
    tracker.sync_done()
    for seq in (1, 2, 4):
        assert tracker.message("c", seq).new
    assert tracker.positions() == {"c": 2}
    assert tracker.missing({"c": 5}) == 2  # 3 and 5
    tracker.own("c", 5)
    tracker.message("c", 3)
    assert tracker.positions() == {"c": 5}
    assert tracker.missing({"c": 5}) == 0


def test_order_violation_gap_and_duplicate_in_steady_state() -> None:
    tracker = ClientTracker(["c"])
    tracker.start_session()
    tracker.sync_done()
    assert not tracker.message("c", 1).gap
    late = tracker.message("c", 3)
    assert late.gap
    assert not late.order_violation
    out_of_order = tracker.message("c", 2)
    assert out_of_order.order_violation
    assert out_of_order.new
    assert tracker.message("c", 3).duplicate


def test_a_resync_may_resend_lower_seqs_without_a_violation() -> None:
    tracker = ClientTracker(["c"])
    tracker.start_session()
    tracker.sync_done()
    tracker.message("c", 1)
    tracker.message("c", 3)  # 2 missing: the client syncs from 1
    tracker.start_session()
    assert not tracker.message("c", 2).order_violation
    assert tracker.message("c", 3).duplicate
    tracker.sync_done()
    assert tracker.positions() == {"c": 3}


def test_registry_catches_seq_conflicts_and_double_stores() -> None:
    registry = MessageRegistry()
    registry.observe("c", 1, "m1", "k1")
    registry.observe("c", 1, "m1", "k1")
    assert (registry.seq_conflicts, registry.app_duplicates) == (0, 0)
    registry.observe("c", 1, "m2", "k2")
    assert registry.seq_conflicts == 1
    registry.observe("c", 2, "m3", "k1")
    assert registry.app_duplicates == 1


def test_the_registry_of_a_long_run_gives_the_cycle_collector_nothing_to_walk() -> None:
    """A full collection walks every object the collector tracks: 100,000 messages held as
    tracked containers stopped the soak's generator for up to 1.2 s at a time."""
    registry = MessageRegistry()
    gc.collect()
    before = len(gc.get_objects())
    for seq in range(1, 100_001):
        registry.observe(f"c{seq % 3000}", seq, f"m{seq}", f"k{seq}")
    assert len(gc.get_objects()) - before < 100
    assert (registry.seq_conflicts, registry.app_duplicates) == (0, 0)
