"""A consumer of the message topic that notes when each bench message is readable on the bus.

It is configured like a gateway's (`gateway.delivery.consumer_config`: the same fetch wait and
minimum), in a group of its own and assigned every partition from its end, so the moment it
reads a record is the moment a gateway could have. It also keeps the record's create time (the
publisher's `produce()` call).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, TopicPartition

from realchat.events.topics import MESSAGE_CREATED
from realchat.gateway.delivery import consumer_config

#: How long the topic's partitions and their end offsets may take to look up.
POSITION_TIMEOUT_S = 15.0
#: The consumer's poll; it returns as soon as a record is there.
POLL_S = 0.1


@dataclass(frozen=True)
class Seen:
    content: str
    #: The record's create time (Unix seconds, millisecond resolution).
    produced: float
    #: When this consumer read it (Unix seconds).
    read: float


def seen(record: Message, read_at: float) -> Seen | None:
    """The message content and moments of a `chat.message.created` record; None for others."""
    value = record.value()
    if record.error() is not None or not isinstance(value, bytes):
        return None
    try:
        content = json.loads(value).get("content")
    except (ValueError, AttributeError):
        return None
    _, created_ms = record.timestamp()
    if not isinstance(content, str) or created_ms <= 0:
        return None
    return Seen(content, created_ms / 1000, read_at)


class BusWatch:
    """Runs in a thread of its own; `on_seen` is called from that thread."""

    def __init__(self, bootstrap_servers: str, on_seen: Callable[[Seen], None]) -> None:
        group = f"realchat-bench-latency-{uuid.uuid4().hex[:8]}"
        self._consumer = Consumer(consumer_config(bootstrap_servers, group))
        self._on_seen = on_seen
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-bus-watch", daemon=True)

    def start(self) -> None:
        metadata = self._consumer.list_topics(MESSAGE_CREATED, timeout=POSITION_TIMEOUT_S)
        starts = []
        for partition in metadata.topics[MESSAGE_CREATED].partitions:
            _, end = self._consumer.get_watermark_offsets(
                TopicPartition(MESSAGE_CREATED, partition), timeout=POSITION_TIMEOUT_S
            )
            starts.append(TopicPartition(MESSAGE_CREATED, partition, end))
        # Explicit end offsets, looked up now: every record produced from here on is read.
        self._consumer.assign(starts)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                record = self._consumer.poll(POLL_S)
                read_at = time.time()
                if record is not None and (found := seen(record, read_at)) is not None:
                    self._on_seen(found)
        finally:
            self._consumer.close()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5.0)
