"""The outbox publisher against real PostgreSQL and Kafka: everything arrives, in order per
conversation, with several replicas; poison events are dead-lettered and can be replayed."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
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

from realchat.chat.service import ChatService
from realchat.config import OutboxSettings
from realchat.events.models import MessageCreated
from realchat.events.topics import MESSAGE_CREATED
from realchat.outbox import store as outbox_store
from realchat.outbox.publisher import CLOSE_FLUSH_S, OutboxPublisher, producer_factory
from realchat.stack.supervisor import Stack
from tests.support.databases import new_users
from tests.support.kafka import QUIET
from tests.support.topics import Received, TopicTail
from tests.support.waiting import eventually, eventually_async

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAST = OutboxSettings(batch_size=200, poll_interval_s=0.01, backoff_max_s=1)


@asynccontextmanager
async def running_publishers(
    pool: asyncpg.Pool, bootstrap: str, replicas: int = 1, settings: OutboxSettings = FAST
) -> AsyncIterator[list[OutboxPublisher]]:
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
        yield publishers
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
    alice, bob = await new_users(pool, 2)
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
    await send_more(service, owner, dict.fromkeys(ids, 0), per_conversation, concurrency)
    return dict.fromkeys(ids, per_conversation)


async def send_more(
    service: ChatService,
    owner: uuid.UUID,
    sent: dict[str, int],
    per_conversation: int,
    concurrency: int = 32,
) -> None:
    """Send per_conversation more messages into each conversation of `sent` (counts so far)."""
    gate = asyncio.Semaphore(concurrency)

    async def sender(cid: str) -> None:
        for n in range(sent[cid], sent[cid] + per_conversation):
            async with gate:
                await service.send_message(owner, cid, f"{cid}-{n}", f"message {n}")

    await asyncio.gather(*(sender(cid) for cid in sent))


@pytest.mark.slow
async def test_two_replicas_publish_10000_events_complete_and_in_order(
    service: ChatService, pool: asyncpg.Pool, stack: Stack
) -> None:
    """Half the events wait in the outbox when the replicas start, half are written while they
    run: shards change hands under live traffic and both replicas do part of the work."""
    bootstrap = stack.kafka.bootstrap_servers
    tail = TopicTail(bootstrap, MESSAGE_CREATED)
    owner = uuid.uuid4()
    conversations = [
        str((await service.create_conversation(owner, [], "")).conversation_id) for _ in range(50)
    ]
    try:
        await send_more(service, owner, dict.fromkeys(conversations, 0), 100)
        async with running_publishers(pool, bootstrap, replicas=2) as publishers:
            await send_more(service, owner, dict.fromkeys(conversations, 100), 100)
            remaining = await eventually_async(lambda: unpublished(pool), lambda n: n == 0, 120)
            assert remaining == 0
            tail.read(10_000, timeout_s=60)
        shares = [p.published_count for p in publishers]
        events = created_events(tail.received, set(conversations))
    finally:
        tail.close()
    assert sum(shares) == 10_000
    assert all(share > 0 for share in shares), shares
    assert len(events) == 10_000
    assert_complete_and_ordered(events, dict.fromkeys(conversations, 200), allow_duplicates=False)


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

        listing = realchat_cli(db_dsn, "dead-letters", "list", "--json")
        assert listing.returncode == 0, listing.stderr
        [summary] = json.loads(listing.stdout)
        assert "too large" in summary["error"].lower()
        shown = realchat_cli(db_dsn, "dead-letters", "show", str(summary["id"]))
        assert shown.returncode == 0, shown.stderr
        letter = json.loads(shown.stdout)
        assert letter["outbox_id"] == letters[0]["outbox_id"]
        assert str(big.message.message_id) in letter["payload"]
        assert realchat_cli(db_dsn, "dead-letters", "show", "999999").returncode == 1
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


async def test_a_publisher_stopped_while_the_broker_is_unreachable_exits_in_bounded_time(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    """With no delivery timeout a batch waits for the broker as long as it takes; shutting
    down must still end, leaving the batch unmarked for a later publisher."""
    owner = uuid.uuid4()
    cid = str((await service.create_conversation(owner, [], "")).conversation_id)
    await service.send_message(owner, cid, "k", "waits for a broker")
    settings = FAST.model_copy(update={"stop_timeout_s": 2.0})
    nowhere = producer_factory("127.0.0.1:1", settings.delivery_timeout_s, "test-unreachable")
    stop = asyncio.Event()
    task = asyncio.create_task(OutboxPublisher(pool, nowhere, settings).run(stop))
    try:

        async def leases() -> int:
            held: int = await pool.fetchval(
                """SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                    WHERE l.locktype = 'advisory' AND l.granted
                      AND d.datname = current_database()"""
            )
            return held

        # The batch is in flight: its open transaction holds the shard's lease.
        assert await eventually_async(leases, lambda n: n > 0, 30) > 0
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(asyncio.shield(task), timeout=60)
        took = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.wait({task}, timeout=60)
    assert took < settings.stop_timeout_s + 2 * CLOSE_FLUSH_S + 5, took
    assert await unpublished(pool) == 1
    assert await leases() == 0


async def test_retention_deletes_only_rows_published_long_enough_ago(
    service: ChatService, pool: asyncpg.Pool
) -> None:
    """The outbox stays small, and an event still waiting for the broker is never deleted."""
    owner = uuid.uuid4()
    cid = str((await service.create_conversation(owner, [], "")).conversation_id)
    for n in range(3):
        await service.send_message(owner, cid, f"r{n}", f"message {n}")
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM outbox ORDER BY id")]
    old, recent, waiting = ids[-3:]
    await pool.execute(
        "UPDATE outbox SET published_at = clock_timestamp() - interval '1 hour' WHERE id = $1", old
    )
    await pool.execute("UPDATE outbox SET published_at = clock_timestamp() WHERE id = $1", recent)
    await pool.execute(
        "UPDATE outbox SET created_at = clock_timestamp() - interval '1 day' WHERE id = $1", waiting
    )

    assert await outbox_store.delete_published_before(pool, age_s=600) == 1
    left = {r["id"] for r in await pool.fetch("SELECT id FROM outbox")}
    assert old not in left
    assert {recent, waiting} <= left
