"""Small blocking Kafka helpers for tests (confluent-kafka, as the services use)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

QUIET = {"log_level": 2}


def durable_producer(bootstrap: str, **extra: Any) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            **QUIET,
            **extra,
        }
    )


def produce_all(
    producer: Producer, topic: str, records: list[tuple[bytes, bytes]], timeout_s: float = 60
) -> list[Message]:
    """Produce and wait for every acknowledgement; raise on the first delivery error."""
    delivered: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append(msg)

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    remaining = producer.flush(timeout_s)
    if errors:
        raise RuntimeError(f"delivery failed: {errors[0]}")
    if remaining:
        raise TimeoutError(f"{remaining} records not acknowledged within {timeout_s}s")
    return delivered


def group_consumer(bootstrap: str, group: str, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **QUIET,
        }
    )
    consumer.subscribe([topic])
    return consumer


def poll_n(consumer: Consumer, n: int, timeout_s: float = 60) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error() is not None:
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise RuntimeError(f"consume error: {msg.error()}")
        got.append(msg)
    return got


def create_topic(
    bootstrap: str, partitions: int, replication: int, name: str | None = None, **config: str
) -> str:
    name = name or f"test.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    futures = admin.create_topics(
        [NewTopic(name, partitions, replication, config=config)], request_timeout=30
    )
    futures[name].result(timeout=30)
    return name


def committed_offsets(
    consumer: Consumer, partitions: list[TopicPartition], timeout_s: float = 60
) -> set[tuple[int, int]]:
    """The group's committed (partition, offset)s, waiting out a coordinator that is still
    loading after a broker restart (the broker answers NOT_COORDINATOR until it is)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return {(tp.partition, tp.offset) for tp in consumer.committed(partitions, timeout=10)}
        except KafkaException as exc:
            retriable = exc.args[0].code() in (
                KafkaError.NOT_COORDINATOR,
                KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                KafkaError.COORDINATOR_NOT_AVAILABLE,
            )
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
