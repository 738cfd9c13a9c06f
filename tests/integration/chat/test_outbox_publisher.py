"""The outbox publisher against real PostgreSQL and Kafka: everything arrives, in order per
conversation, with several replicas; poison events are dead-lettered and can be replayed."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from realchat.chat.outbox import OutboxPublisher, producer_factory
from realchat.chat.service import ChatService
from realchat.config import OutboxSettings
from realchat.events.models import MessageCreated
from realchat.events.topics import MESSAGE_CREATED
from realchat.stack.supervisor import Stack
from tests.support.kafka import QUIET
from tests.support.topics import Received, TopicTail
from tests.support.waiting import eventually, eventually_async

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAST = OutboxSettings(batch_size=200, poll_interval_s=0.01, delivery_timeout_s=10, backoff_max_s=1)


@asynccontextmanager
async def running_publishers(
    pool: asyncpg.Pool, bootstrap: str, replicas: int = 1, settings: OutboxSettings = FAST
) -> AsyncIterator[None]:
    stop = asyncio.Event()
    publishers = [
        OutboxPublisher(
            pool,
            producer_factory(bootstrap, settings.delivery_timeout_s, f"test-publisher-{n}"),
            settings,
        )
        for n in range(replicas)
    ]
    tasks = [asyncio.create_task(p.run(stop)) for p in publishers]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def unpublished(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return count


def created_events(received: list[Received], conversations: set[str]) -> list[MessageCreated]:
    return [
        r.event
        for r in received
        if isinstance(r.event, MessageCreated) and str(r.event.conversation_id) in conversations
    ]


async def test_published_event_is_keyed_by_conversation_and_marked(
    service: ChatService, pool: asyncpg.Pool, stack: Stack
) -> None:
    bootstrap = stack.kafka.bootstrap_servers
    alice, bob = uuid.uuid4(), uuid.uuid4()
    conversation = await service.create_conversation(alice, [str(bob)], "")
    cid = str(conversation.conversation_id)
    tail = TopicTail(bootstrap, MESSAGE_CREATED)
    try:
        sent = await service.send_message(
            alice, cid, "k", "hello", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
        )
        async with running_publishers(pool, bootstrap):
            assert await eventually(lambda: len(tail.read(1, timeout_s=0.2)) >= 1, 30)
            assert await eventually_async(lambda: unpublished(pool), lambda n: n == 0, 30) == 0
        record = tail.received[0]
    finally:
        tail.close()
    assert record.key == cid.encode()
    assert record.headers["event-type"] == MESSAGE_CREATED.encode()
    assert record.headers["traceparent"].startswith(b"00-111")
    assert isinstance(record.event, MessageCreated)
    assert record.event.message_id == sent.message.message_id
    assert set(record.event.recipients) == {alice, bob}


def assert_complete_and_ordered(
    events: list[MessageCreated], expected: dict[str, int], *, allow_duplicates: bool
) -> None:
    """Every seq 1..n of every conversation arrived; per conversation seqs never go back."""
    by_conversation: dict[str, list[int]] = defaultdict(list)
    for e in events:
        by_conversation[str(e.conversation_id)].append(e.seq)
    assert set(by_conversation) == set(expected)
    for cid, seqs in by_conversation.items():
        assert set(seqs) == set(range(1, expected[cid] + 1)), f"missing seqs in {cid}"
        if allow_duplicates:
            firsts = list(dict.fromkeys(seqs))
            assert firsts == sorted(firsts), f"first occurrences out of order in {cid}"
        else:
            assert seqs == list(range(1, expected[cid] + 1)), f"not strictly increasing in {cid}"


async def send_many(
    service: ChatService, conversations: int, per_conversation: int, concurrency: int = 32
) -> dict[str, int]:
    """Send per_conversation messages into each of `conversations` new conversations."""
    owner = uuid.uuid4()
    ids = [
        str((await service.create_conversation(owner, [], "")).conversation_id)
        for _ in range(conversations)
    ]
    gate = asyncio.Semaphore(concurrency)

    async def sender(cid: str) -> None:
        for n in range(per_conversation):
            async with gate:
                await service.send_message(owner, cid, f"{cid}-{n}", f"message {n}")

    await asyncio.gather(*(sender(cid) for cid in ids))
    return dict.fromkeys(ids, per_conversation)


@pytest.mark.slow
async def test_two_replicas_publish_10000_events_complete_and_in_order(
    service: ChatService, pool: asyncpg.Pool, stack: Stack
) -> None:
    bootstrap = stack.kafka.bootstrap_servers
    tail = TopicTail(bootstrap, MESSAGE_CREATED)
    try:
        expected = await send_many(service, conversations=50, per_conversation=200)
        async with running_publishers(pool, bootstrap, replicas=2):
            remaining = await eventually_async(lambda: unpublished(pool), lambda n: n == 0, 120)
            assert remaining == 0
            tail.read(10_000, timeout_s=60)
        events = created_events(tail.received, set(expected))
    finally:
        tail.close()
    assert len(events) == 10_000
    assert_complete_and_ordered(events, expected, allow_duplicates=False)


def set_topic_limit(bootstrap: str, max_message_bytes: int | None) -> None:
    """Lower (or, with None, reset) the broker's size limit of the message topic."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    operation = AlterConfigOpType.SET if max_message_bytes else AlterConfigOpType.DELETE
    entry = ConfigEntry(
        "max.message.bytes", str(max_message_bytes or ""), incremental_operation=operation
    )
    resource = ConfigResource(ResourceType.TOPIC, MESSAGE_CREATED, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def realchat_cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REALCHAT_DATABASE__URL": dsn}
    return subprocess.run(
        [sys.executable, "-m", "realchat", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.slow
async def test_poison_event_is_dead_lettered_others_flow_and_replay_delivers_it(
    service: ChatService, pool: asyncpg.Pool, stack: Stack, db_dsn: str
) -> None:
    bootstrap = stack.kafka.bootstrap_servers
    owner = uuid.uuid4()
    poisoned, healthy = [
        str((await service.create_conversation(owner, [], "")).conversation_id) for _ in range(2)
    ]
    tail = TopicTail(bootstrap, MESSAGE_CREATED)
    set_topic_limit(bootstrap, 2000)
    try:
        await service.send_message(owner, poisoned, "p1", "small before")
        incompressible = secrets.token_urlsafe(3000)[:4000]  # lz4 would shrink "xxx..." to nothing
        big = await service.send_message(owner, poisoned, "p2", incompressible)
        await service.send_message(owner, poisoned, "p3", "small after")
        for n in range(20):
            await service.send_message(owner, healthy, f"h{n}", f"healthy {n}")
        async with running_publishers(pool, bootstrap):
            remaining = await eventually_async(lambda: unpublished(pool), lambda n: n == 0, 60)
        assert remaining == 0
        letters = await pool.fetch("SELECT outbox_id, error, payload FROM dead_letters")
        assert len(letters) == 1, [dict(r) for r in letters]
        assert "too large" in letters[0]["error"].lower()
        assert str(big.message.message_id).encode() in bytes(letters[0]["payload"])
        tail.read(22, timeout_s=30)
        delivered = created_events(tail.received, {poisoned, healthy})
        seen = {(str(e.conversation_id), e.seq) for e in delivered}
        assert seen == {(poisoned, 1), (poisoned, 3)} | {(healthy, s) for s in range(1, 21)}

        listing = realchat_cli(db_dsn, "dead-letters", "list")
        assert listing.returncode == 0, listing.stderr
        assert "too large" in listing.stdout.lower()
        set_topic_limit(bootstrap, None)
        replay = realchat_cli(db_dsn, "dead-letters", "replay", "--all")
        assert replay.returncode == 0, replay.stdout + replay.stderr
        async with running_publishers(pool, bootstrap):
            remaining = await eventually_async(lambda: unpublished(pool), lambda n: n == 0, 60)
        assert remaining == 0
        tail.read(23, timeout_s=30)
        replayed = [e for e in created_events(tail.received, {poisoned}) if e.seq == 2]
        assert [e.message_id for e in replayed] == [big.message.message_id]
        assert (
            await pool.fetchval("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL") == 0
        )
        again = realchat_cli(db_dsn, "dead-letters", "replay", "--all")
        assert again.returncode == 1  # nothing left to replay
    finally:
        set_topic_limit(bootstrap, None)
        tail.close()
