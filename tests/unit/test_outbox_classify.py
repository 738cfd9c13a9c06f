"""The publisher's verdicts on a batch, without a broker."""

from __future__ import annotations

from confluent_kafka import KafkaError

from realchat.bus.producer import Delivered, DeliveryError
from realchat.outbox.publisher import classify
from realchat.outbox.rows import OutboxEvent


def event(event_id: int, conversation: str) -> OutboxEvent:
    return OutboxEvent(event_id, 0, "t", "t", conversation, b"{}", {}, 0)


OK = Delivered("t", 0, 1)
TIMEOUT = DeliveryError(KafkaError(KafkaError._MSG_TIMED_OUT))
TOO_LARGE = DeliveryError(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))


def test_all_delivered_are_published_in_order() -> None:
    events = [event(1, "a"), event(2, "b"), event(3, "a")]
    outcome = classify(events, [OK, OK, OK], isolated=False)
    assert outcome.published == [1, 2, 3]
    assert not outcome.retry
    assert not outcome.poison


def test_a_failure_holds_back_later_events_of_its_conversation_only() -> None:
    events = [event(1, "a"), event(2, "a"), event(3, "b"), event(4, "a")]
    outcome = classify(events, [TIMEOUT, OK, OK, OK], isolated=False)
    assert outcome.published == [3]
    assert set(outcome.retry) == {1, 2, 4}
    assert "held back" in outcome.retry[2]
    assert not outcome.poison


def test_too_large_in_a_batch_is_only_a_suspect() -> None:
    outcome = classify([event(1, "a"), event(2, "b")], [TOO_LARGE, TOO_LARGE], isolated=False)
    assert outcome.suspects == [1, 2]
    assert not outcome.poison
    assert set(outcome.retry) == {1, 2}


def test_too_large_alone_is_poison_and_unblocks_its_conversation() -> None:
    outcome = classify([event(1, "a")], [TOO_LARGE], isolated=True)
    assert list(outcome.poison) == [1]
    assert not outcome.retry


def test_an_outage_is_never_poison_even_when_isolated() -> None:
    outcome = classify([event(1, "a")], [TIMEOUT], isolated=True)
    assert not outcome.poison
    assert list(outcome.retry) == [1]
