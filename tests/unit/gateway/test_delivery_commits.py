"""The gateway's consumer commits handled offsets at most once per interval while records flow,
and what it handled is committed at the latest one interval after the flow stops."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from realchat.gateway import delivery
from realchat.gateway.delivery import KafkaDelivery


@dataclass
class Record:
    offset_: int

    def topic(self) -> str:
        return "chat.message.created.v1"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.offset_

    def error(self) -> None:
        return None


@dataclass
class FakeConsumer:
    """One record per poll while `pending` lasts (a low rate: every event its own batch)."""

    pending: list[Record]
    commits: list[list[TopicPartition]] = field(default_factory=list)

    def poll(self, timeout: float) -> Record | None:
        return self.pending.pop(0) if self.pending else None

    def consume(self, num_messages: int, timeout: float) -> list[Record]:
        return []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(offsets)

    def assignment(self) -> list[TopicPartition]:
        return []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_single_record_batches_share_one_commit_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(delivery.time, "monotonic", clock.monotonic)
    consumer_thread = KafkaDelivery({}, handle=None)  # type: ignore[arg-type]
    handled: list[int] = []

    def on_loop(records: list[Any]) -> None:
        handled.extend(r.offset() for r in records)
        consumer_thread._handled[("chat.message.created.v1", 0)] = records[-1].offset() + 1

    monkeypatch.setattr(consumer_thread, "_handle_on_loop", on_loop)
    consumer = FakeConsumer([Record(n) for n in range(50)])
    for _ in range(50):  # 50 events, 10 ms apart: half an interval
        consumer_thread._poll(consumer)  # type: ignore[arg-type]
        clock.now += 0.01
    assert handled == list(range(50))
    assert len(consumer.commits) == 1, "the first event's commit, then none within the interval"

    clock.now += delivery.COMMIT_INTERVAL_S
    consumer_thread._poll(consumer)  # an empty poll after the flow stopped
    assert consumer.commits[-1] == [TopicPartition("chat.message.created.v1", 0, 50)]
    consumer_thread._poll(consumer)
    assert len(consumer.commits) == 2, "nothing new handled: nothing more to commit"
