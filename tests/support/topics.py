"""Reading what was published to a shared topic since a test started."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, TopicPartition

from realchat.events.models import EVENT_TYPE_HEADER, MessageAcknowledged, MessageCreated, decode
from tests.support.kafka import QUIET


@dataclass(frozen=True)
class Received:
    partition: int
    offset: int
    key: bytes
    headers: dict[str, bytes]
    event: MessageCreated | MessageAcknowledged


class TopicTail:
    """Marks a topic's end offsets now; `read()` returns what arrived after the mark."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"tail-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                **QUIET,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        marks = []
        for p in partitions:
            _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            marks.append(TopicPartition(topic, p, high))
        self._consumer.assign(marks)
        self.received: list[Received] = []

    def read(self, until: int, timeout_s: float = 60) -> list[Received]:
        """Poll until `until` records arrived in total (or the timeout); return them all."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < until and time.monotonic() < deadline:
            for msg in self._consumer.consume(num_messages=1000, timeout=0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(str(error))
                headers = dict(msg.headers() or [])
                event_type = headers[EVENT_TYPE_HEADER].decode()
                value, partition, offset = msg.value(), msg.partition(), msg.offset()
                assert value is not None
                assert partition is not None
                assert offset is not None
                event = decode(event_type, value)
                self.received.append(Received(partition, offset, msg.key() or b"", headers, event))
        return self.received

    def close(self) -> None:
        self._consumer.close()
