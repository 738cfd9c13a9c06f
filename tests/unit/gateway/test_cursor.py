"""The per-conversation cursor as a Sans-I/O state machine: events in, verdicts out, no loop."""

from __future__ import annotations

import pytest

from realchat.gateway.cursor import (
    MAX_DEFERRED_CHANGES,
    MAX_PENDING_ECHOES,
    ConversationCursor,
    Cursors,
    CursorState,
    IllegalTransitionError,
    Verdict,
)


def backfill_page(cursor: ConversationCursor, seqs: range) -> list[int]:
    """The seqs of a history page that the cursor says to send."""
    return [seq for seq in seqs if cursor.on_backfilled(seq) is Verdict.DELIVER]


def test_live_events_in_order_are_delivered_and_repeats_are_duplicates() -> None:
    cursor = ConversationCursor()
    assert [cursor.on_live(seq) for seq in (3, 4, 4, 2, 5)] == [
        Verdict.DELIVER,  # the first event sets the position
        Verdict.DELIVER,
        Verdict.DUPLICATE,
        Verdict.DUPLICATE,
        Verdict.DELIVER,
    ]
    assert cursor.delivered == 5


def test_a_gap_starts_a_backfill_that_owns_the_conversation_until_caught_up() -> None:
    cursor = ConversationCursor()
    cursor.on_live(1)
    assert cursor.on_live(3) is Verdict.BACKFILL
    assert cursor.state is CursorState.BACKFILLING
    assert cursor.on_live(4) is Verdict.REMEMBER  # not sent: the backfill will read it
    assert cursor.backfill_after() == 1
    assert backfill_page(cursor, range(2, 4)) == [2, 3]
    assert not cursor.on_page_end(short=True)  # 4 was seen live: not caught up yet
    assert cursor.backfill_after() == 3
    assert backfill_page(cursor, range(3, 5)) == [4]  # 3 again (a re-read) is a duplicate
    assert cursor.on_page_end(short=True)
    assert cursor.state is CursorState.LIVE
    assert cursor.on_live(5) is Verdict.DELIVER


def test_a_full_page_is_never_the_last_one() -> None:
    cursor = ConversationCursor()
    cursor.on_sync(0)
    backfill_page(cursor, range(1, 11))
    assert not cursor.on_page_end(short=False)
    assert cursor.on_page_end(short=True)


def test_the_clients_own_sends_are_not_echoed_live_nor_by_a_gap_backfill() -> None:
    cursor = ConversationCursor()
    cursor.on_own_send(2)  # its send_ok came back before 1 arrived through Kafka
    assert cursor.on_live(1) is Verdict.DELIVER
    assert cursor.on_live(2) is Verdict.ECHO
    cursor.on_own_send(4)
    assert cursor.on_live(5) is Verdict.BACKFILL  # 3 and 4 missing
    assert backfill_page(cursor, range(3, 6)) == [3, 5]  # 4 was the client's own


def test_a_sync_resends_the_clients_own_sends_too() -> None:
    cursor = ConversationCursor()
    cursor.on_live(1)
    cursor.on_own_send(2)
    cursor.on_sync(0)
    assert backfill_page(cursor, range(1, 3)) == [1, 2]


def test_own_sends_remembered_are_bounded_and_the_oldest_forgotten() -> None:
    cursor = ConversationCursor()
    cursor.on_live(1)
    first, last = 10, 10 + 2 * MAX_PENDING_ECHOES
    for seq in range(first, last):
        cursor.on_own_send(seq)
    verdicts = [cursor.on_live(seq) for seq in range(2, last)]
    echoed = [seq for seq, v in zip(range(2, last), verdicts, strict=True) if v is Verdict.ECHO]
    assert echoed == list(range(last - MAX_PENDING_ECHOES, last))


def test_a_failed_backfill_returns_to_live_and_the_next_event_finds_the_gap_again() -> None:
    cursor = ConversationCursor()
    cursor.on_live(1)
    assert cursor.on_live(3) is Verdict.BACKFILL
    cursor.on_backfill_ended()
    assert cursor.on_live(4) is Verdict.BACKFILL


def test_illegal_transitions_raise_naming_the_state() -> None:
    cursor = ConversationCursor()
    with pytest.raises(IllegalTransitionError, match="live"):
        cursor.on_backfilled(1)
    with pytest.raises(IllegalTransitionError, match="live"):
        cursor.on_page_end(short=True)
    cursor.on_sync(0)
    with pytest.raises(IllegalTransitionError, match="backfilling"):
        cursor.on_sync(0)


def test_before_live_delivery_starts_events_are_held_then_a_sync_owns_them() -> None:
    """The defect this machine fixes: a live event that reached a fresh connection before its
    first sync went out ahead of the sync's backfill (seqs 104, 105, 6, 7, ...)."""
    cursors = Cursors(live=False)
    assert cursors.on_live("c", 104) is Verdict.HOLD
    assert cursors.on_live("c", 105) is Verdict.HOLD
    cursors.of("c").on_sync(5)  # the client's first sync, from its position
    assert cursors.start_live()
    assert not cursors.start_live()
    # The held events are offered again: the backfill owns the conversation and must reach them.
    assert [cursors.on_live("c", seq) for seq in (104, 105)] == [Verdict.REMEMBER] * 2
    cursor = cursors.of("c")
    assert backfill_page(cursor, range(6, 106)) == list(range(6, 106))
    assert cursor.on_page_end(short=True)
    assert cursors.on_live("c", 106) is Verdict.DELIVER


def test_held_events_of_a_conversation_no_sync_covers_are_delivered_live() -> None:
    cursors = Cursors(live=False)
    assert cursors.on_live("other", 7) is Verdict.HOLD
    cursors.start_live()
    assert cursors.on_live("other", 7) is Verdict.DELIVER


def test_a_change_goes_out_only_after_its_message() -> None:
    cursor = ConversationCursor()
    cursor.on_sync(2)
    assert cursor.on_change(2, b"edit-2", of_message=True) is Verdict.DELIVER  # delivered before
    # Message 4's edit arrived before message 4 (another topic), while a backfill runs.
    assert cursor.on_change(4, b"edit-4", of_message=True) is Verdict.DEFER
    assert cursor.on_change(3, b"delete-3", of_message=True) is Verdict.DEFER
    assert cursor.release() == []
    assert backfill_page(cursor, range(3, 4)) == [3]
    assert cursor.release() == [b"delete-3"]
    assert backfill_page(cursor, range(4, 6)) == [4, 5]
    assert cursor.release() == [b"edit-4"]
    assert not cursor.deferring
    assert cursor.on_page_end(short=True)
    assert cursor.on_change(5, b"edit-5", of_message=True) is Verdict.DELIVER


def test_a_message_change_waits_for_a_conversation_not_seen_yet_a_rename_does_not() -> None:
    cursor = ConversationCursor()  # no sync, no live message of this conversation yet
    assert cursor.on_change(1, b"edit-1", of_message=True) is Verdict.DEFER
    assert cursor.on_change(1, b"rename", of_message=False) is Verdict.DELIVER
    assert cursor.on_live(1) is Verdict.DELIVER
    assert cursor.release() == [b"edit-1"]


def test_deferred_changes_are_bounded() -> None:
    cursor = ConversationCursor()
    cursor.on_sync(0)
    for n in range(MAX_DEFERRED_CHANGES + 5):
        cursor.on_change(1, str(n).encode(), of_message=True)
    backfill_page(cursor, range(1, 2))
    released = cursor.release()
    assert len(released) == MAX_DEFERRED_CHANGES
    assert released[0] == b"5"  # the oldest went first


def test_changes_are_held_until_live_delivery_starts() -> None:
    cursors = Cursors(live=False)
    assert cursors.on_change("c", 1, b"edit", of_message=True) is Verdict.HOLD


def test_past_the_bound_a_changed_message_is_read_from_history_instead_of_its_event() -> None:
    cursor = ConversationCursor()
    cursor.on_sync(0)
    assert backfill_page(cursor, range(1, 2)) == [1]
    assert cursor.on_page_end(short=True)
    # Changes of messages 2.. arrive long before the messages (the bus caught up unevenly).
    for seq in range(2, MAX_DEFERRED_CHANGES + 3):
        assert cursor.on_change(seq, f"edit-{seq}".encode(), of_message=True) is Verdict.DEFER
    # Message 2's change was dropped from the frames: its live event is stale, so it is read.
    assert cursor.on_live(2) is Verdict.BACKFILL
    cursor.on_own_send(2)  # even the client's own message: its send_ok copy is stale too
    assert backfill_page(cursor, range(2, 4)) == [2, 3]
    assert cursor.release() == [b"edit-3"]
    assert cursor.on_page_end(short=True)
    assert cursor.on_live(4) is Verdict.DELIVER  # not stale: its change frame is still held
    assert cursor.release() == [b"edit-4"]
