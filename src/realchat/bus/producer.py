"""A confluent-kafka (librdkafka) producer bridged to asyncio.

Guarantees it is configured for: idempotence (no duplicates from its own retries, per-partition
order kept), `acks=all`, at most 5 requests in flight. `produce()` returns a future that resolves
when the broker acknowledged the record, or fails with the librdkafka error. A poll thread serves
the delivery reports; they are handed to the event loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer


@dataclass(frozen=True)
class Delivered:
    topic: str
    partition: int
    offset: int


class DeliveryError(Exception):
    """A record was not acknowledged; `error` is librdkafka's verdict."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(error.str())
        self.error = error

    @property
    def code(self) -> int:
        return int(self.error.code())


def producer_config(
    bootstrap_servers: str, *, delivery_timeout_s: float, client_id: str
) -> dict[str, str | int | float | bool]:
    return {
        "bootstrap.servers": bootstrap_servers,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        # 0 = no timeout: librdkafka retries until the broker acknowledges. Decision 4: with a
        # timeout, a record that timed out in flight may be missing while the next one of its
        # partition is written, and re-sending it puts it after that one.
        "message.timeout.ms": int(delivery_timeout_s * 1000),
        "linger.ms": 5,
        # TCP_NODELAY, as the brokers and the Java clients have it: librdkafka leaves Nagle on,
        # and a small request then waits for the ACK of the one before. Produce -> consume of
        # one record at a time, interleaved A/B (600 each, loaded machine): p50 5.1 -> 4.2 ms,
        # p99 56 -> 41 ms.
        "socket.nagle.disable": True,
        "compression.type": "lz4",
        # Java clients' partitioner: every client maps a conversation to the same partition.
        "partitioner": "murmur2_random",
        "retry.backoff.ms": 100,
        "retry.backoff.max.ms": 1000,
        "log_level": 4,
    }


class AsyncProducer:
    def __init__(self, config: Mapping[str, str | int | float | bool]) -> None:
        self._loop = asyncio.get_running_loop()
        self._fatal: KafkaError | None = None
        self._producer = Producer({**config, "error_cb": self._on_error})
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._poller.start()

    @property
    def fatal_error(self) -> KafkaError | None:
        """Set when librdkafka declared the producer unusable: create a new one."""
        return self._fatal

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error

    def _poll_forever(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.1)

    def produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> asyncio.Future[Delivered]:
        future: asyncio.Future[Delivered] = self._loop.create_future()

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            self._loop.call_soon_threadsafe(_settle, future, error, message)

        try:
            self._producer.produce(
                topic, value=value, key=key, headers=list(headers), on_delivery=on_delivery
            )
        except KafkaException as exc:  # refused locally, e.g. larger than message.max.bytes
            future.set_exception(DeliveryError(exc.args[0]))
        except BufferError:  # the local queue is full: a retriable condition
            future.set_exception(DeliveryError(KafkaError(KafkaError._QUEUE_FULL)))
        return future

    async def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to `timeout_s`), then let the librdkafka client go.

        The client holds our error callback and we hold the client: dropping our reference
        breaks that cycle, so the client is destroyed now instead of lingering (and reconnecting)
        until a garbage collection."""
        await asyncio.to_thread(self._producer.flush, timeout_s)
        self._stopping.set()
        await asyncio.to_thread(self._poller.join)
        del self._producer


def _settle(future: asyncio.Future[Delivered], error: KafkaError | None, message: Message) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(DeliveryError(error))
        return
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        future.set_exception(RuntimeError("delivery report without topic, partition or offset"))
        return
    future.set_result(Delivered(topic, partition, offset))
