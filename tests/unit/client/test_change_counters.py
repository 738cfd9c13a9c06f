"""The change counters a client's syncs name (the catch-up on edits and deletes)."""

from __future__ import annotations

from realchat.client.change_counters import ChangeCounters


def test_a_sync_names_the_counters_told_and_zero_for_what_is_held_from_the_start() -> None:
    counters = ChangeCounters()
    assert counters.for_sync([]) is None
    counters.told({"told": 4})
    assert counters.for_sync(["told", "live"]) == {"told": 4, "live": 0}


def test_a_conversation_the_baseline_started_mid_way_names_no_counter_until_told() -> None:
    counters = ChangeCounters()
    counters.told({"synced": 2})
    counters.baseline_ended(["synced", "mid_way"])
    assert counters.for_sync(["synced", "mid_way"]) == {"synced": 2}
    counters.told({"mid_way": 9})
    assert counters.for_sync(["mid_way"]) == {"mid_way": 9}
