"""A confluent-kafka (librdkafka) consumer in a thread of its own, bridged to asyncio.

librdkafka's consumer blocks, so it runs in a thread that polls, hands each batch to the event
loop, waits until the loop is done with it, and only then lets the offsets move: a process that
dies in between gets the batch again (at least once). Subclasses say how a batch is read and
what becomes of it (`_poll`); this class owns the thread, its start and its stop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

log = structlog.get_logger(__name__)

T = TypeVar("T")

ConsumerConfig = Mapping[str, str | int | bool]


class ConsumerThread:
    """`start()` on the event loop; `stop()` ends the thread after its current batch. A thread
    that died sets `failure`: the process must see it (not ready, or exit)."""

    def __init__(self, config: ConsumerConfig, topics: Sequence[str], *, name: str) -> None:
        self._config = dict(config)
        self._topics = list(topics)
        self._name = name
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failure: BaseException | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    async def stop(self, timeout_s: float | None = None) -> bool:
        """Stop consuming and leave; False if the thread was still at it after `timeout_s` (a
        commit the brokers never answered): it is a daemon, the process exits anyway. Polls
        instead of joining in a worker thread, which would hold up the event loop's own shutdown
        for as long as the join."""
        self._stopping.set()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._thread is not None and self._thread.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                log.warning(
                    "kafka consumer did not stop in time", consumer=self._name, timeout_s=timeout_s
                )
                return False
            await asyncio.sleep(0.02)
        return True

    def _run(self) -> None:
        consumer = Consumer(self._config)
        try:
            self._subscribe(consumer)
            while not self._stopping.is_set():
                self._poll(consumer)
            self._stopped(consumer)
        except BaseException as exc:  # the process must see a dead consumer
            self.failure = exc
            log.error("kafka consumer thread failed", consumer=self._name, error=repr(exc))
        finally:
            consumer.close()

    def _subscribe(self, consumer: Consumer) -> None:
        consumer.subscribe(self._topics)

    def _poll(self, consumer: Consumer) -> None:
        """Read one batch and settle it (in the consumer thread)."""
        raise NotImplementedError

    def _stopped(self, consumer: Consumer) -> None:
        """Last words before the consumer closes (after a stop, not after a failure)."""

    def _on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the event loop and wait for its outcome (from the consumer thread)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()


def next_batch(consumer: Consumer, max_records: int, wait_s: float) -> list[Message]:
    """The next record as soon as it is there, plus whatever else is already fetched.

    `consume(n, timeout)` alone returns only when n records came or the timeout passed: a
    quiet moment's lone event would wait out the timeout (half of it on average)."""
    first = consumer.poll(wait_s)
    if first is None:
        return []
    return [first, *consumer.consume(num_messages=max_records - 1, timeout=0)]


def data_records(records: Sequence[Message]) -> list[Message]:
    """The records of a batch that carry data; the errors among them other than a partition's
    end are logged."""
    data = []
    for record in records:
        error = record.error()
        if error is None:
            data.append(record)
        elif error.code() != KafkaError._PARTITION_EOF:
            log.warning("kafka consume error", error=str(error))
    return data


def next_offsets(records: Sequence[Message]) -> list[TopicPartition]:
    """Per partition, the offset after the last record of the batch."""
    ends: dict[tuple[str, int], int] = {}
    for record in records:
        topic, partition, offset = record.topic(), record.partition(), record.offset()
        if topic is not None and partition is not None and offset is not None:
            ends[(topic, partition)] = max(ends.get((topic, partition), -1), offset + 1)
    return [TopicPartition(t, p, o) for (t, p), o in ends.items()]


def commit(consumer: Consumer, offsets: list[TopicPartition], *, asynchronous: bool) -> None:
    """Commit `offsets`; a failure is logged, not raised: it only costs a re-delivery later,
    which every consumer of RealChat's topics tolerates."""
    if not offsets:
        return
    try:
        if asynchronous:
            consumer.commit(offsets=offsets, asynchronous=True)
        else:
            consumer.commit(offsets=offsets, asynchronous=False)
    except Exception as exc:  # whatever it was, the offsets stay where they were
        log.warning("offset commit failed", error=str(exc))
