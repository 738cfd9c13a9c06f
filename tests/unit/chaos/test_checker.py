"""The invariant checker catches what it claims: histories with a lost message, a reordering, a
duplicate, an acknowledged send missing from the database, an unpublished event, a gap."""

from __future__ import annotations

from realchat.chaos.checker import BusFacts, DatabaseFacts, judge
from realchat.chaos.history import (
    ClientSummary,
    Edited,
    Link,
    Received,
    Record,
    Sent,
    Updated,
)

CONV = "c1"
MESSAGES = [(1, "m1"), (2, "m2"), (3, "m3")]


def db(
    messages: list[tuple[int, str]] = MESSAGES, members: set[str] | None = None
) -> DatabaseFacts:
    return DatabaseFacts({CONV: messages}, {CONV: members or {"alice", "bob"}}, 0, 0)


def bus(seqs: set[int] | None = None) -> BusFacts:
    return BusFacts({CONV: {1, 2, 3} if seqs is None else seqs}, 0)


def history(bob_sees: list[int], wire_duplicates: int = 0) -> list[Record]:
    return [
        ClientSummary("alice/0", "alice", 0, 0),
        ClientSummary("bob/0", "bob", wire_duplicates, 1),
        *(Sent("alice/0", CONV, f"k{s}", s, f"m{s}", 0.0, 1.0) for s in (1, 2, 3)),
        *(Received("alice/0", CONV, s, f"m{s}", 2.0) for s in (1, 2, 3)),
        *(Received("bob/0", CONV, s, f"m{s}", 2.0) for s in bob_sees),
    ]


def test_a_clean_history_passes_and_wire_duplicates_are_only_counted() -> None:
    verdict = judge(history([1, 2, 3], wire_duplicates=4), db(), bus())
    assert verdict.ok
    assert (verdict.acknowledged, verdict.deliveries_checked, verdict.wire_duplicates) == (3, 6, 4)


def test_a_lost_message_is_reported() -> None:
    verdict = judge(history([1, 3]), db(), bus())
    assert not verdict.ok
    assert verdict.lost_deliveries == 1
    assert verdict.examples["lost_deliveries"] == ["bob/0 c1#2"]


def test_a_reordering_is_reported() -> None:
    verdict = judge(history([1, 3, 2]), db(), bus())
    assert not verdict.ok
    assert verdict.order_violations >= 1
    assert verdict.lost_deliveries == 0
    assert verdict.app_duplicates == 0


def test_a_duplicate_at_the_application_is_reported() -> None:
    verdict = judge(history([1, 2, 2, 3]), db(), bus())
    assert not verdict.ok
    assert verdict.app_duplicates == 1
    assert verdict.order_violations == 0


def test_an_acknowledged_send_missing_from_the_database_is_reported() -> None:
    verdict = judge(history([1, 2]), db(MESSAGES[:2]), bus({1, 2}))
    assert verdict.lost_acknowledged == 1
    assert verdict.lost_deliveries == 0  # nobody can miss what was never stored...
    assert not verdict.ok  # ...but the sender was told it was


def test_a_send_acknowledged_long_after_its_first_attempt_is_stalled() -> None:
    """Stored and delivered, but its client waited 940 s: a wedged client, not a fault's."""
    records = history([1, 2, 3])
    records[2] = Sent("alice/0", CONV, "k1", 1, "m1", 0.0, 940.0)
    verdict = judge(records, db(), bus())
    assert (verdict.stalled_sends, verdict.ok) == (1, False)
    assert verdict.examples["stalled_sends"] == ["k1: 940 s"]
    records[2] = Sent("alice/0", CONV, "k1", 1, "m1", 0.0, 45.0)  # a long fault: slow, not stuck
    assert judge(records, db(), bus()).ok


def test_a_device_without_a_ready_connection_for_long_is_stalled() -> None:
    """A reading device that lost its connection and got a ready one only 127 s later (its
    handshakes failing, or one wedged): nothing it sends shows it, the reconnects do."""
    links = [
        Link("bob/0", "ready", 10.0, session_id="s1"),
        Link("bob/0", "lost", 20.0, code=1006, reason="connection closed"),
        Link("bob/0", "lost", 21.0, code=1000, reason="handshake failed"),
        Link("bob/0", "ready", 147.0, session_id="s2"),
        Link("alice/0", "lost", 30.0, code=1006),  # back 40 s later: a long fault, not a wedge
        Link("alice/0", "ready", 70.0, session_id="s3"),
        Link("alice/0", "lost", 900.0, code=1000, reason="closed"),  # the run's end: not judged
    ]
    verdict = judge([*history([1, 2, 3]), *links], db(), bus())
    assert (verdict.stalled_reconnects, verdict.ok) == (1, False)
    assert verdict.examples["stalled_reconnects"] == ["bob/0: 127 s"]
    assert judge([*history([1, 2, 3]), *links[4:]], db(), bus()).ok


def test_an_unpublished_event_and_a_gap_in_the_database_are_reported() -> None:
    assert judge(history([1, 2, 3]), db(), bus({1, 3})).unpublished_events == 1
    gap = [(1, "m1"), (3, "m3")]
    verdict = judge(history([1, 3]), db(gap), bus({1, 3}))
    assert verdict.db_gaps == 1
    assert not verdict.ok


def test_an_outsider_seeing_a_conversation_fails_the_run() -> None:
    records = [*history([1, 2, 3]), ClientSummary("eve/0", "eve", 0, 0)]
    records.append(Received("eve/0", CONV, 1, "m1", 2.0))
    verdict = judge(records, db(), bus())
    assert not verdict.ok
    assert verdict.examples["outsider"] == ["eve/0 saw c1"]


def versioned_db(versions: dict[int, int]) -> DatabaseFacts:
    return DatabaseFacts(
        {CONV: MESSAGES}, {CONV: {"alice", "bob"}}, 0, 0,
        {(CONV, seq): versions.get(seq, 1) for seq, _ in MESSAGES},
    )  # fmt: skip


def test_edits_that_every_device_applied_after_their_message_pass() -> None:
    records = [
        *history([1, 2, 3]),
        Edited("alice/0", CONV, 2, 2, 3.0),
        Updated("bob/0", CONV, 2, 2, 3.1),
        Updated("alice/0", CONV, 2, 2, 3.1),
    ]
    verdict = judge(records, versioned_db({2: 2}), bus())
    assert verdict.ok, verdict.examples
    assert verdict.edits_acknowledged == 1


def test_a_lost_edit_a_stale_device_and_a_change_without_its_message_are_reported() -> None:
    # The acknowledged edit to version 3 is not stored (version 2 is).
    lost = [*history([1, 2, 3]), Edited("alice/0", CONV, 2, 3, 3.0)]
    lost += [Updated(c, CONV, 2, 2, 3.1) for c in ("alice/0", "bob/0")]
    verdict = judge(lost, versioned_db({2: 2}), bus())
    assert (verdict.lost_edits, verdict.ok) == (1, False)
    # Bob never got the change: he ends at version 1 of message 2.
    stale = [*history([1, 2, 3]), Updated("alice/0", CONV, 2, 2, 3.1)]
    verdict = judge(stale, versioned_db({2: 2}), bus())
    assert (verdict.stale_versions, verdict.ok) == (1, False)
    assert verdict.examples["stale_versions"] == ["bob/0 c1#2: v1, stored v2"]
    # A sync gave bob the current version: not stale, whatever came live.
    synced = [*history([1, 2]), Received("bob/0", CONV, 3, "m3", 2.0, version=2)]
    synced.append(Updated("alice/0", CONV, 3, 2, 3.1))
    assert judge(synced, versioned_db({3: 2}), bus()).ok
    # Bob got a change of a message he was never handed (and so lost that message).
    orphan = [*history([1, 2]), Updated("bob/0", CONV, 3, 2, 1.5)]
    orphan.append(Updated("alice/0", CONV, 3, 2, 3.1))
    verdict = judge(orphan, versioned_db({3: 2}), bus())
    assert verdict.edits_without_message == 1
    assert not verdict.ok
