"""Kafka -> pending notifications. All notifier replicas form one consumer group, so each
partition (a set of conversations, in order) is read by one of them at a time.

A batch of message events is recorded in PostgreSQL before its offsets are committed: a crash in
between re-delivers the events, and recording them again changes nothing (store.record skips
what is already pending or decided).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import msgspec
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

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


class MessageConsumer:
    """The consumer thread: polls, has the event loop record the batch, then commits."""

    def __init__(self, config: dict[str, str | int | bool], record: Recorder) -> None:
        self._config = config
        self._record = record
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failure: BaseException | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="notifier-consumer", daemon=True)
        self._thread.start()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop polling and leave the group (a batch being recorded is given up, uncommitted:
        it is re-delivered to whoever takes the partition)."""
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout_s)

    def _run(self) -> None:
        consumer = Consumer(self._config)
        try:
            consumer.subscribe([MESSAGE_CREATED])
            while not self._stopping.is_set():
                records = consumer.consume(num_messages=BATCH_SIZE, timeout=POLL_TIMEOUT_S)
                for record in records:
                    error = record.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        log.warning("kafka consume error", error=str(error))
                if records and self._record_until_done(decode_batch(records)):
                    _commit(consumer, _next_offsets(records))
        except BaseException as exc:  # the process must see a dead consumer
            self.failure = exc
            log.error("notifier consumer failed", error=repr(exc))
        finally:
            consumer.close()

    def _record_until_done(self, events: list[MessageCreated]) -> bool:
        """Record on the event loop, retrying while PostgreSQL is away: the offsets may only
        move once the batch is durable. False if told to stop first."""
        assert self._loop is not None
        while not self._stopping.is_set():
            future = asyncio.run_coroutine_threadsafe(self._record(events), self._loop)
            try:
                future.result()
                return True
            except Exception as exc:
                log.warning("recording message events failed; retrying", error=repr(exc))
                self._stopping.wait(0.5)
        return False


def _commit(consumer: Consumer, offsets: list[TopicPartition]) -> None:
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:  # costs a re-delivery, which records nothing twice
        log.warning("offset commit failed", error=str(exc))


def _next_offsets(records: Sequence[Message]) -> list[TopicPartition]:
    """Per partition, the offset after the last record of the batch."""
    ends: dict[tuple[str, int], int] = {}
    for record in records:
        topic, partition, offset = record.topic(), record.partition(), record.offset()
        if topic is not None and partition is not None and offset is not None:
            ends[(topic, partition)] = max(ends.get((topic, partition), -1), offset + 1)
    return [TopicPartition(t, p, o) for (t, p), o in ends.items()]
