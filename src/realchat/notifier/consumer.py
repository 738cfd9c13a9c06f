"""Kafka -> pending notifications. All notifier replicas form one consumer group, so each
partition (a set of conversations, in order) is read by one of them at a time.

A batch of message events is recorded in PostgreSQL before its offsets are committed: a crash in
between re-delivers the events, and recording them again changes nothing (store.record skips
what is already pending or decided).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import msgspec
import structlog
from confluent_kafka import Consumer, Message

from realchat.bus.consumer import ConsumerConfig, ConsumerThread, commit, data_records, next_offsets
from realchat.events.models import MessageCreated
from realchat.events.topics import MESSAGE_CREATED

log = structlog.get_logger(__name__)

GROUP_ID = "realchat-notifier"
#: Records handed to the recorder at once, at most, and how long one wait for them lasts.
BATCH_SIZE = 500
POLL_TIMEOUT_S = 0.2

Recorder = Callable[[Sequence[MessageCreated]], Coroutine[Any, Any, None]]

_decoder = msgspec.json.Decoder(MessageCreated)


def notifier_consumer_config(bootstrap_servers: str) -> dict[str, str | int | bool]:
    return {
        "bootstrap.servers": bootstrap_servers,
        "group.id": GROUP_ID,
        "enable.auto.commit": False,
        # A new group starts with what is there: at worst some old messages are looked at,
        # and their recipients' read positions suppress what they already read.
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10_000,
        "log_level": 4,
    }


def decode_batch(records: Sequence[Message]) -> list[MessageCreated]:
    """The message events of a batch; an undecodable record is logged and skipped (it can never
    become decodable, and must not stop the partition)."""
    events = []
    for record in records:
        value = record.value()
        if record.error() is not None or not isinstance(value, bytes):
            continue
        try:
            events.append(_decoder.decode(value))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.error("undecodable message event skipped", error=str(exc))
    return events


class MessageConsumer(ConsumerThread):
    """The consumer thread: polls, has the event loop record the batch, then commits."""

    def __init__(self, config: ConsumerConfig, record: Recorder) -> None:
        super().__init__(config, [MESSAGE_CREATED], name="notifier-consumer")
        self._record = record

    def _poll(self, consumer: Consumer) -> None:
        """A batch is given up uncommitted if the consumer stops while recording it: it is
        re-delivered to whoever takes the partition."""
        records = consumer.consume(num_messages=BATCH_SIZE, timeout=POLL_TIMEOUT_S)
        if records and self._record_until_done(decode_batch(data_records(records))):
            commit(consumer, next_offsets(records), asynchronous=False)

    def _record_until_done(self, events: list[MessageCreated]) -> bool:
        """Record on the event loop, retrying while PostgreSQL is away: the offsets may only
        move once the batch is durable. False if told to stop first."""
        while not self._stopping.is_set():
            try:
                self._on_loop(self._record(events))
                return True
            except Exception as exc:
                log.warning("recording message events failed; retrying", error=repr(exc))
                self._stopping.wait(0.5)
        return False
