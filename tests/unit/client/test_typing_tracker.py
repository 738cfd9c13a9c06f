from __future__ import annotations

from realchat.client.typing import TypingTracker
from realchat.contract.frames import UserTypingFrame


def test_typing_expires_unless_repeated_and_ends_on_a_stop() -> None:
    tracker = TypingTracker(expiry_s=6.0)
    tracker.seen(UserTypingFrame("c", "bob", True), now=0.0)
    tracker.seen(UserTypingFrame("c", "alice", True), now=1.0)
    tracker.seen(UserTypingFrame("d", "carol", True), now=1.0)
    assert tracker.typing("c", now=2.0) == ["alice", "bob"]
    tracker.seen(UserTypingFrame("c", "bob", True), now=5.0)  # a repeat extends it
    assert tracker.typing("c", now=6.5) == ["alice", "bob"]
    assert tracker.typing("d", now=6.9) == ["carol"]
    assert tracker.typing("c", now=7.0) == ["bob"]  # alice's expired: no repeat in 6 s
    tracker.seen(UserTypingFrame("c", "bob", False), now=7.5)
    assert tracker.typing("c", now=7.5) == []
    tracker.seen(UserTypingFrame("d", "carol", True), now=8.0)
    tracker.stopped("d", "carol")
    assert tracker.typing("d", now=8.0) == []
