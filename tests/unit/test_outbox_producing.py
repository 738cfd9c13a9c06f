"""How the publisher hands events to Kafka, without a broker: the producer's durable settings and
the order kept when the producer refuses an event on the spot."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from confluent_kafka import KafkaError

from realchat.bus.producer import Delivered, DeliveryError, producer_config
from realchat.config import OutboxSettings
from realchat.observability.tracing import tracer
from realchat.outbox.publisher import NotSentError, classify, produce_in_order
from realchat.outbox.rows import OutboxEvent


def event(event_id: int, conversation: str) -> OutboxEvent:
    return OutboxEvent(event_id, 0, "t", "t", conversation, str(event_id).encode(), {}, 0)


class RefusingProducer:
    """Acknowledges every record at once except those whose value is in `refuse`."""

    def __init__(self, refuse: set[bytes]) -> None:
        self.refuse = refuse
        self.produced: list[bytes] = []

    def produce(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> asyncio.Future[Delivered]:
        future: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        if value in self.refuse:
            future.set_exception(DeliveryError(KafkaError(KafkaError._QUEUE_FULL)))
        else:
            self.produced.append(value)
            future.set_result(Delivered(topic, 0, len(self.produced)))
        return future


def test_the_default_producer_is_idempotent_waits_for_all_and_never_times_out() -> None:
    config = producer_config(
        "k:9092", delivery_timeout_s=OutboxSettings().delivery_timeout_s, client_id="c"
    )
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert 1 <= int(config["max.in.flight.requests.per.connection"]) <= 5
    # A timed-out record could be overtaken by the next one of its partition: retry forever.
    assert config["message.timeout.ms"] == 0


@pytest.mark.asyncio
async def test_after_a_refusal_the_later_events_of_that_conversation_are_not_produced() -> None:
    events = [event(1, "a"), event(2, "a"), event(3, "b"), event(4, "a"), event(5, "b")]
    spans = [tracer().start_span("publish") for _ in events]
    producer = RefusingProducer(refuse={b"2"})

    futures = produce_in_order(producer, events, spans)
    results = await asyncio.gather(*futures, return_exceptions=True)

    # Event 4 never reached the producer: in the partition it would have overtaken event 2.
    assert producer.produced == [b"1", b"3", b"5"]
    assert isinstance(results[3], NotSentError)
    outcome = classify(events, results, isolated=False)
    assert outcome.published == [1, 3, 5]
    assert set(outcome.retry) == {2, 4}
