"""The client's ordering core, exhaustively: pure, no I/O, the clock passed in."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from realchat.client.ordering import Ordering
from realchat.contract.frames import Message

C = "conversation-c"
D = "conversation-d"


def msg(seq: int, conversation_id: str = C) -> Message:
    return Message(
        message_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{conversation_id}/{seq}")),
        conversation_id=conversation_id,
        seq=seq,
        sender_id="sender",
        content=f"m{seq}",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def seqs(messages: list[Message]) -> list[int]:
    return [m.seq for m in messages]


def feed(ordering: Ordering, order: list[int], now: float = 0.0) -> list[int]:
    released: list[int] = []
    for seq in order:
        released += seqs(ordering.accept(msg(seq), now))
    return released


def live(**kwargs: int) -> Ordering:
    """An ordering past its baseline: C at position 0 unless given."""
    return Ordering(gap_timeout_s=2.0, positions={C: 0} | kwargs)


# -- order, duplicates, gaps -----------------------------------------------------------------------


def test_in_order_messages_are_released_at_once() -> None:
    ordering = live()
    assert [seqs(ordering.accept(msg(n), 0)) for n in (1, 2, 3)] == [[1], [2], [3]]
    assert ordering.positions() == {C: 3}
    assert ordering.next_due() is None


def test_duplicates_are_dropped_whether_released_or_held() -> None:
    ordering = live()
    assert feed(ordering, [1, 1, 2, 1, 4, 4]) == [1, 2]
    assert ordering.held(C) == [4]
    assert feed(ordering, [2, 4, 3, 3, 4, 1]) == [3, 4]
    assert ordering.duplicates == 8
    assert ordering.held(C) == []


def test_a_message_ahead_of_a_gap_is_held_until_the_gap_is_filled() -> None:
    ordering = live()
    assert feed(ordering, [1, 3, 4, 6]) == [1]
    assert ordering.held(C) == [3, 4, 6]
    assert feed(ordering, [2]) == [2, 3, 4]
    assert ordering.positions() == {C: 4}
    assert feed(ordering, [5]) == [5, 6]


def test_reverse_order_is_released_in_order_when_the_first_arrives() -> None:
    ordering = live()
    assert feed(ordering, [5, 4, 3, 2]) == []
    assert feed(ordering, [1]) == [1, 2, 3, 4, 5]


def test_send_ok_before_lower_seqs_waits_for_them() -> None:
    # The client's own send_ok (seq 5) overtakes messages 4 still on their way.
    ordering = live(**{C: 3})
    assert seqs(ordering.accept(msg(5), 0)) == []
    assert seqs(ordering.accept(msg(4), 0)) == [4, 5]
    assert seqs(ordering.accept(msg(5), 0)) == []  # its live echo, or a sync, later


def test_conversations_are_independent() -> None:
    ordering = Ordering(positions={C: 0, D: 10})
    assert seqs(ordering.accept(msg(2, C), 0)) == []
    assert seqs(ordering.accept(msg(11, D), 0)) == [11]
    assert seqs(ordering.accept(msg(1, C), 0)) == [1, 2]
    assert ordering.positions() == {C: 2, D: 11}


def test_every_arrival_order_with_a_duplicate_releases_each_once_in_order() -> None:
    for order in set(itertools.permutations([1, 2, 3, 3, 4, 5])):  # all 360 distinct orders
        ordering = live()
        assert feed(ordering, list(order)) == [1, 2, 3, 4, 5], order
        assert ordering.held(C) == []
        assert ordering.next_due() is None


def test_random_interleavings_of_two_conversations_with_redeliveries() -> None:
    rng = random.Random(7)
    for _ in range(200):
        arrivals = [(cid, n) for cid in (C, D) for n in range(1, 31)]
        arrivals += rng.sample(arrivals, 20)  # redeliveries
        rng.shuffle(arrivals)
        ordering = Ordering(positions={C: 0, D: 0})
        released: dict[str, list[int]] = {C: [], D: []}
        for cid, n in arrivals:
            for m in ordering.accept(msg(n, cid), 0):
                released[m.conversation_id].append(m.seq)
        assert released == {C: list(range(1, 31)), D: list(range(1, 31))}


# -- the gap timer ---------------------------------------------------------------------------------


def test_a_gap_that_lasts_the_gap_timeout_asks_for_a_sync_from_the_position() -> None:
    ordering = live()
    feed(ordering, [1, 2])
    feed(ordering, [4], now=10.0)
    assert ordering.next_due() == 12.0
    assert ordering.due_syncs(11.9) == {}
    assert ordering.due_syncs(12.0) == {C: 2}
    # Asked once; if the gap persists, asked again one timeout later.
    assert ordering.due_syncs(13.0) == {}
    assert ordering.next_due() == 14.0
    assert ordering.due_syncs(14.5) == {C: 2}
    feed(ordering, [3], now=15.0)
    assert ordering.next_due() is None
    assert ordering.due_syncs(100.0) == {}


def test_a_later_message_does_not_restart_the_timer_but_progress_does() -> None:
    ordering = live()
    feed(ordering, [5], now=10.0)  # gap 1-4 opens
    feed(ordering, [6], now=11.0)
    assert ordering.next_due() == 12.0
    feed(ordering, [1], now=11.5)  # progress: the gap is being filled
    assert ordering.next_due() == 13.5
    feed(ordering, [2, 3, 4], now=12.0)
    assert ordering.next_due() is None


def test_a_conversation_first_seen_mid_stream_is_synced_from_zero_at_once() -> None:
    ordering = Ordering(gap_timeout_s=2.0, positions={})
    assert seqs(ordering.accept(msg(7, D), 50.0)) == []
    assert ordering.due_syncs(50.0) == {D: 0}
    assert feed_d(ordering, [1, 2, 3, 4, 5, 6]) == [1, 2, 3, 4, 5, 6, 7]


def feed_d(ordering: Ordering, order: list[int]) -> list[int]:
    return [m.seq for n in order for m in ordering.accept(msg(n, D), 0)]


def test_a_conversation_first_seen_at_seq_1_needs_nothing() -> None:
    ordering = Ordering(positions={})
    assert feed_d(ordering, [1, 2]) == [1, 2]
    assert ordering.next_due() is None


def test_sync_done_with_the_gap_still_open_rearms_the_timer() -> None:
    ordering = live()
    feed(ordering, [3], now=0.0)
    assert ordering.due_syncs(2.0) == {C: 0}
    ordering.sync_done({C: 3}, now=5.0)
    assert ordering.next_due() == 7.0


# -- bounded hold-back -----------------------------------------------------------------------------


def test_the_hold_back_cap_keeps_the_lowest_and_asks_for_a_sync_at_once() -> None:
    ordering = Ordering(gap_timeout_s=2.0, hold_back_cap=3, positions={C: 0})
    assert feed(ordering, [2, 3, 4], now=0.0) == []
    assert ordering.next_due() == 2.0
    assert feed(ordering, [9, 10], now=1.0) == []  # beyond the cap: dropped
    assert ordering.held(C) == [2, 3, 4]
    assert ordering.dropped == 2
    assert ordering.due_syncs(1.0) == {C: 0}  # at once, not after the gap timeout
    # A lower message displaces the highest held one.
    feed(ordering, [3, 5], now=1.0)
    assert ordering.held(C) == [2, 3, 4]
    assert feed(ordering, [6], now=1.0) == []
    assert ordering.dropped == 4
    # While that sync is outstanding, more overflow does not ask again at once...
    assert ordering.due_syncs(1.5) == {}
    # ...and the sync's backfill (everything after 0, in order) brings it all, once.
    assert feed(ordering, list(range(1, 11)), now=2.0) == list(range(1, 11))
    ordering.sync_done({C: 10}, now=2.0)
    assert ordering.held(C) == []
    assert ordering.next_due() is None


def test_a_full_buffer_evicts_the_highest_for_a_lower_message() -> None:
    ordering = Ordering(hold_back_cap=3, positions={C: 0})
    feed(ordering, [5, 6, 7])
    feed(ordering, [3])
    assert ordering.held(C) == [3, 5, 6]
    assert feed(ordering, [1, 2, 4]) == [1, 2, 3, 4, 5, 6]
    assert feed(ordering, [7]) == [7]


def test_memory_stays_bounded_under_a_flood_behind_a_gap() -> None:
    ordering = Ordering(hold_back_cap=50, positions={C: 0})
    assert feed(ordering, list(range(2, 10_000))) == []
    assert len(ordering.held(C)) == 50
    assert ordering.held(C)[-1] == 51


def test_the_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="hold_back_cap"):
        Ordering(hold_back_cap=0)


# -- starting positions: given, created, baseline --------------------------------------------------


def test_given_positions_are_where_delivery_resumes() -> None:
    ordering = Ordering(positions={C: 40})
    assert not ordering.needs_baseline
    assert feed(ordering, [39, 40, 41]) == [41]


def test_start_at_never_moves_a_known_position() -> None:
    ordering = Ordering(positions={C: 5})
    assert ordering.start_at(C, 0, 0.0) == []
    assert ordering.position(C) == 5
    assert ordering.start_at(D, 0, 0.0) == []
    assert ordering.position(D) == 0


def test_a_baseline_starts_each_conversation_at_the_lowest_seq_it_sent() -> None:
    ordering = Ordering(gap_timeout_s=2.0)  # no positions: the first sync is a plain one
    assert ordering.needs_baseline
    ordering.begin_baseline()
    # A live message that arrived before the sync started, then the backfill 6..11.
    assert feed(ordering, [11, 7, 6, 8, 9, 10, 11]) == []
    assert ordering.positions() == {}
    assert ordering.due_syncs(100.0) == {}  # nothing to ask: the baseline is on its way
    released = ordering.end_baseline({C: 11, D: 4}, now=1.0)
    assert seqs(released) == [6, 7, 8, 9, 10, 11]
    assert ordering.positions() == {C: 11, D: 4}
    assert not ordering.needs_baseline
    assert ordering.duplicates == 1


def test_a_baseline_with_a_hole_in_it_keeps_the_hole_and_its_timer() -> None:
    ordering = Ordering(gap_timeout_s=2.0)
    ordering.begin_baseline()
    feed(ordering, [6, 8])
    assert seqs(ordering.end_baseline({C: 8}, now=1.0)) == [6]
    assert ordering.held(C) == [8]
    assert ordering.due_syncs(3.0) == {C: 6}


def test_a_baseline_position_below_what_arrived_wins() -> None:
    ordering = Ordering(gap_timeout_s=2.0)
    feed(ordering, [9])  # from the start, before begin_baseline: it waits too
    assert seqs(ordering.end_baseline({C: 7}, now=0.0)) == []
    assert ordering.positions() == {C: 7}
    assert ordering.held(C) == [9]
    assert feed(ordering, [8]) == [8, 9]


def test_a_conversation_the_baseline_did_not_list_starts_at_its_first_message() -> None:
    ordering = Ordering()
    ordering.begin_baseline()
    assert feed_d(ordering, [3, 4]) == []
    assert seqs(ordering.end_baseline({}, now=0.0)) == [3, 4]
    assert ordering.positions() == {D: 4}


def test_known_conversations_flow_during_a_baseline_and_new_ones_start_at_zero_after() -> None:
    ordering = Ordering()
    ordering.start_at(C, 0, 0.0)  # e.g. the client created it
    assert feed(ordering, [1, 2]) == [1, 2]
    ordering.end_baseline({C: 2}, now=0.0)
    assert ordering.accept(msg(3, D), 0.0) == []
    assert ordering.due_syncs(0.0) == {D: 0}


def test_start_at_releases_a_conversation_waiting_for_its_baseline() -> None:
    ordering = Ordering()
    feed(ordering, [2, 3])
    assert seqs(ordering.start_at(C, 1, 0.0)) == [2, 3]
    assert ordering.positions() == {C: 3}


def test_a_held_message_is_replaced_by_a_newer_version_of_it() -> None:
    ordering = Ordering(positions={C: 0})
    assert ordering.accept(msg(2), now=0.0) == []  # held behind the gap
    edited = msgspec.structs.replace(msg(2), version=2, content="edited")
    assert ordering.accept(edited, now=0.1) == []
    assert ordering.accept(msg(2), now=0.2) == []  # an older copy changes nothing
    released = ordering.accept(msg(1), now=0.3)
    assert [(m.seq, m.version, m.content) for m in released] == [(1, 1, "m1"), (2, 2, "edited")]
