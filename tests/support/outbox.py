"""Outbox checks: how many rows wait in PostgreSQL, and what a reader of
`chat.message.created.v1` must see: every committed message of the watched conversations at least
once, per conversation in seq order, duplicates only as exact repeats."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from confluent_kafka import KafkaException

from realchat.events.models import MessageCreated
from tests.support.topics import Received, TopicTail


async def open_tail(bootstrap: str, topic: str, timeout_s: float = 30) -> TopicTail:
    """A `TopicTail`, once every partition of a just-created topic has a leader (until then
    the broker answers NOT_LEADER_FOR_PARTITION to the offset query)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await asyncio.to_thread(TopicTail, bootstrap, topic)
        except KafkaException:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.25)


async def count(pool: asyncpg.Pool, sql: str, *args: object) -> int:
    return int(await pool.fetchval(sql, *args))


async def unpublished(pool: asyncpg.Pool) -> int:
    """Outbox rows not yet acknowledged by Kafka (and marked)."""
    return await count(pool, "SELECT count(*) FROM outbox WHERE published_at IS NULL")


async def eventually_async(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.25
) -> bool:
    """`tests.support.waiting.eventually` for a predicate that must query something."""
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval_s)
    return True


#: conversation -> seq -> message_id, as committed in PostgreSQL.
Expected = dict[uuid.UUID, dict[int, uuid.UUID]]


@dataclass(frozen=True)
class Delivery:
    #: conversation -> its records, in partition offset order.
    records: dict[uuid.UUID, list[Received]]

    @property
    def total(self) -> int:
        return sum(len(r) for r in self.records.values())

    def seen(self) -> set[tuple[uuid.UUID, int]]:
        return {(c, r.event.seq) for c, records in self.records.items() for r in records}

    def repeated(self) -> set[tuple[uuid.UUID, int]]:
        """(conversation, seq) pairs that arrived more than once."""
        counts: dict[tuple[uuid.UUID, int], int] = defaultdict(int)
        for conversation, records in self.records.items():
            for r in records:
                counts[(conversation, r.event.seq)] += 1
        return {k for k, n in counts.items() if n > 1}


def ours(received: list[Received], conversations: set[uuid.UUID]) -> Delivery:
    """The `MessageCreated` records of `conversations` (the topic is shared with other tests)."""
    records: dict[uuid.UUID, list[Received]] = defaultdict(list)
    for r in received:
        if isinstance(r.event, MessageCreated) and r.event.conversation_id in conversations:
            records[r.event.conversation_id].append(r)
    for conversation in records:
        records[conversation].sort(key=lambda r: (r.partition, r.offset))
    return Delivery(dict(records))


def covers(received: list[Received], expected: Expected) -> bool:
    """True once every expected (conversation, seq) arrived at least once."""
    wanted = {(c, s) for c, seqs in expected.items() for s in seqs}
    return wanted <= ours(received, set(expected)).seen()


def check_delivery(received: list[Received], expected: Expected) -> Delivery:
    """Assert the reader's contract for every expected conversation; return what arrived."""
    delivery = ours(received, set(expected))
    for conversation, messages in expected.items():
        records = delivery.records.get(conversation, [])
        partitions = {r.partition for r in records}
        assert len(partitions) <= 1, f"{conversation} spread over partitions {partitions}"
        assert all(r.key == str(conversation).encode() for r in records), "wrong record key"
        first: dict[int, Received] = {}
        order: list[int] = []
        for r in records:
            seq = r.event.seq
            if seq in first:
                assert r.event == first[seq].event, (
                    f"{conversation} seq {seq} re-delivered with a different payload: "
                    f"{first[seq].event} then {r.event}"
                )
                assert r.headers == first[seq].headers, f"seq {seq} re-delivered, other headers"
            else:
                first[seq] = r
                order.append(seq)
        missing = sorted(set(messages) - set(first))
        assert not missing, f"{conversation}: seqs never delivered: {missing}"
        unexpected = sorted(set(first) - set(messages))
        assert not unexpected, f"{conversation}: seqs delivered but never committed: {unexpected}"
        assert order == sorted(messages), (
            f"{conversation}: first occurrences out of seq order: "
            f"{[(a, b) for a, b in itertools.pairwise(order) if b <= a][:10]}"
        )
        for seq, message_id in messages.items():
            event = first[seq].event
            assert isinstance(event, MessageCreated)
            assert event.message_id == message_id, f"{conversation} seq {seq}: other message"
    return delivery
