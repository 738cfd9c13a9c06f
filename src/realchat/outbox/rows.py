"""The outbox's rows as the publisher and the operator read them: a pending event, a dead letter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    shard: int
    topic: str
    event_type: str
    partition_key: str
    payload: bytes
    trace_context: dict[str, str]
    attempts: int


@dataclass(frozen=True)
class DeadLetter:
    id: int
    outbox_id: int
    topic: str
    event_type: str
    partition_key: str
    payload: bytes
    attempts: int
    error: str
    created_at: datetime
    dead_lettered_at: datetime
    replayed_at: datetime | None
