"""Group commit's pure core: dedupe by (sender, client_msg_id), per-send outcomes, seq order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from realchat.chat.batch import (
    Created,
    Existing,
    NewMessage,
    Refused,
    assign_seqs,
    fan_out,
    plan_batch,
)
from realchat.chat.store import MessageRecord

ALICE, BOB = uuid.uuid4(), uuid.uuid4()
ROOM, OTHER = uuid.uuid4(), uuid.uuid4()


def send(sender: uuid.UUID, key: str, conversation: uuid.UUID = ROOM) -> NewMessage:
    return NewMessage(conversation, sender, key, f"content of {key}", {})


def record(seq: int, sender: uuid.UUID = ALICE) -> MessageRecord:
    return MessageRecord(uuid.uuid4(), ROOM, seq, sender, "x", datetime(2026, 1, 1, tzinfo=UTC))


def test_distinct_sends_all_lead() -> None:
    plan = plan_batch([send(ALICE, "a"), send(ALICE, "b"), send(BOB, "a")])
    assert plan.leaders == (0, 1, 2)
    assert plan.leader_of == (0, 1, 2)


def test_a_repeated_key_follows_its_first_send_and_keys_are_per_sender() -> None:
    sends = [send(ALICE, "k"), send(BOB, "k"), send(ALICE, "k", OTHER), send(ALICE, "k")]
    plan = plan_batch(sends)
    assert plan.leaders == (0, 1)
    assert plan.leader_of == (0, 1, 0, 0)


def test_followers_of_a_created_message_replay_it() -> None:
    plan = plan_batch([send(ALICE, "k"), send(BOB, "j"), send(ALICE, "k")])
    first, second = record(1), record(2, BOB)
    outcomes = fan_out(plan, [Created(first), Created(second)])
    assert outcomes == [Created(first), Created(second), Existing(first)]


def test_each_send_keeps_its_own_outcome() -> None:
    """A refused send (not a member) changes nobody else's outcome; its twin is refused too."""
    plan = plan_batch([send(ALICE, "a"), send(BOB, "b"), send(BOB, "b"), send(ALICE, "c")])
    earlier = record(7)
    outcomes = fan_out(plan, [Existing(earlier), Refused(), Created(record(8))])
    assert outcomes[0] == Existing(earlier)
    assert outcomes[1] == outcomes[2] == Refused()
    assert isinstance(outcomes[3], Created)


def test_fan_out_refuses_a_mismatched_result() -> None:
    with pytest.raises(ValueError, match="1 outcomes for 2 leaders"):
        fan_out(plan_batch([send(ALICE, "a"), send(ALICE, "b")]), [Refused()])


def test_seqs_follow_arrival_order_within_each_conversation() -> None:
    arrivals = [ROOM, OTHER, ROOM, ROOM, OTHER]
    assert assign_seqs(arrivals, {ROOM: 10}) == [11, 1, 12, 13, 2]
    assert assign_seqs([], {ROOM: 3}) == []
