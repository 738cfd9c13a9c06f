"""The gateway's Kafka delivery and its Redis send limiter against the real test stack.

KafkaDelivery runs in-process with a handler of the test's: offsets are committed only for what
the handler finished, a handler that fails or hangs holds the commit back, a gateway is ready only
once it would see every event from then on, and a burst of one conversation larger than a send
queue reaches a client that keeps up. SendLimiter counts one user's sends across instances.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from realchat.events.models import EVENT_TYPE_HEADER, MessageCreated
from realchat.events.topics import MESSAGE_ACKNOWLEDGED, MESSAGE_CREATED
from realchat.gateway.connection import Connection
from realchat.gateway.delivery import EventDispatcher, KafkaDelivery, consumer_config, group_id
from realchat.gateway.hub import Hub
from realchat.gateway.ratelimit import SendLimiter
from realchat.stack.supervisor import Stack
from tests.support.kafka import QUIET, create_topic, durable_producer, produce_all
from tests.support.ports import free_port_block
from tests.support.waiting import eventually, eventually_async
from tests.unit.gateway.fakes import FakeSink

pytestmark = pytest.mark.asyncio(loop_scope="session")

Handled = tuple[str, int, int, bytes]  # topic, partition, offset, key


def event(conversation_id: uuid.UUID, seq: int, recipients: list[uuid.UUID]) -> bytes:
    return msgspec.json.encode(
        MessageCreated(
            event_id=uuid.uuid4(),
            conversation_id=conversation_id,
            seq=seq,
            message_id=uuid.uuid4(),
            sender_id=uuid.uuid4(),
            content=f"m{seq}",
            created_at=datetime.now(UTC),
            recipients=recipients,
        )
    )


def produce(bootstrap: str, records: Sequence[tuple[uuid.UUID, bytes]]) -> list[tuple[int, int]]:
    """Produce `(conversation_id, payload)` records to chat.message.created.v1 as the outbox
    publisher does (key, event-type header); their (partition, offset), in order."""
    producer = durable_producer(bootstrap)
    placed: list[tuple[int, int]] = []
    errors: list[str] = []

    def on_delivery(err: Any, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            placed.append((msg.partition() or 0, msg.offset() or 0))

    for conversation_id, payload in records:
        producer.produce(
            MESSAGE_CREATED,
            key=str(conversation_id).encode(),
            value=payload,
            headers=[(EVENT_TYPE_HEADER, MESSAGE_CREATED.encode())],
            on_delivery=on_delivery,
        )
    assert producer.flush(30) == 0
    assert not errors, errors
    return placed


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets (next to read) on both topics the gateway consumes."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **QUIET})
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in (MESSAGE_CREATED, MESSAGE_ACKNOWLEDGED)
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ]
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in consumer.committed(partitions, timeout=10)
            if tp.offset >= 0
        }
    finally:
        consumer.close()


class Recorder:
    """A batch handler that records what it handled; it raises on `poison` and waits on `gate`
    at `blocker` (both record keys)."""

    def __init__(self) -> None:
        self.handled: list[Handled] = []
        self.arrived = asyncio.Event()
        self.poison: bytes | None = None
        self.blocker: bytes | None = None
        self.blocked = asyncio.Event()
        self.gate = asyncio.Event()

    async def __call__(self, records: Sequence[Message]) -> None:
        for record in records:
            key = record.key() or b""
            if key == self.poison:
                raise RuntimeError("poison record")
            if key == self.blocker and not self.gate.is_set():
                self.blocked.set()
                await self.gate.wait()
            self.handled.append(
                (record.topic() or "", record.partition() or 0, record.offset() or 0, key)
            )
        self.arrived.set()

    async def wait_for(self, keys: set[bytes], timeout_s: float = 30) -> None:
        async def loop() -> None:
            while not keys <= {key for *_, key in self.handled}:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(loop(), timeout_s)

    def ends(self) -> dict[tuple[str, int], int]:
        """Next offset to read per partition, after what was handled."""
        ends: dict[tuple[str, int], int] = {}
        for topic, partition, offset, _ in self.handled:
            ends[(topic, partition)] = max(ends.get((topic, partition), 0), offset + 1)
        return ends


@pytest_asyncio.fixture(loop_scope="session")
async def group() -> str:
    return f"test-gateway-{uuid.uuid4().hex[:10]}"


async def started(stack: Stack, group: str, handler: Any) -> KafkaDelivery:
    delivery = KafkaDelivery(consumer_config(stack.kafka.bootstrap_servers, group), handler)
    delivery.start()
    assert await delivery.wait_assigned(timeout_s=30)
    return delivery


async def test_offsets_are_committed_for_what_was_dispatched(stack: Stack, group: str) -> None:
    bootstrap = stack.kafka.bootstrap_servers
    recorder = Recorder()
    delivery = await started(stack, group, recorder)
    conversations = [uuid.uuid4() for _ in range(4)]
    records = [(c, event(c, seq, [])) for seq in (1, 2, 3) for c in conversations]
    await asyncio.to_thread(produce, bootstrap, records)
    await recorder.wait_for({str(c).encode() for c in conversations})
    await delivery.stop()
    assert delivery.failure is None

    mine = [h for h in recorder.handled if h[3] in {str(c).encode() for c in conversations}]
    assert len(mine) == len(records)
    done = await asyncio.to_thread(committed, bootstrap, group)
    assert done == recorder.ends(), "committed exactly up to what the handler finished"


async def test_a_failing_handler_commits_nothing_past_its_records(stack: Stack, group: str) -> None:
    bootstrap = stack.kafka.bootstrap_servers
    recorder = Recorder()
    delivery = await started(stack, group, recorder)
    conversation = uuid.uuid4()
    key = str(conversation).encode()
    first = await asyncio.to_thread(
        produce, bootstrap, [(conversation, event(conversation, 1, []))]
    )
    await recorder.wait_for({key})
    # Wait for the asynchronous commit of the first record, so the check below is not vacuous.
    done = await eventually_async(
        lambda: asyncio.to_thread(committed, bootstrap, group),
        lambda offsets: offsets == recorder.ends(),
        timeout_s=30,
    )
    assert done == recorder.ends()

    recorder.poison = key
    rest = await asyncio.to_thread(
        produce, bootstrap, [(conversation, event(conversation, seq, [])) for seq in (2, 3)]
    )
    assert await eventually(lambda: delivery.failure is not None, timeout_s=30)
    await delivery.stop()
    assert isinstance(delivery.failure, RuntimeError)
    (partition, first_offset), (_, poison_offset) = first[0], rest[0]
    done = await asyncio.to_thread(committed, bootstrap, group)
    assert done[(MESSAGE_CREATED, partition)] == first_offset + 1 <= poison_offset


async def test_a_hung_handler_holds_the_commit_back_until_it_finishes(
    stack: Stack, group: str
) -> None:
    bootstrap = stack.kafka.bootstrap_servers
    recorder = Recorder()
    delivery = await started(stack, group, recorder)
    conversation = uuid.uuid4()
    key = str(conversation).encode()
    recorder.blocker = key
    placed = await asyncio.to_thread(
        produce, bootstrap, [(conversation, event(conversation, seq, [])) for seq in (1, 2, 3)]
    )
    await asyncio.wait_for(recorder.blocked.wait(), timeout=30)
    partition = placed[0][0]
    # More records of the same partition queue up behind the hung batch.
    placed += await asyncio.to_thread(
        produce, bootstrap, [(conversation, event(conversation, 4, []))]
    )
    held = await asyncio.to_thread(committed, bootstrap, group)
    assert held.get((MESSAGE_CREATED, partition), 0) <= placed[0][1]
    assert [h for h in recorder.handled if h[3] == key] == []

    recorder.gate.set()
    assert await eventually(lambda: len([h for h in recorder.handled if h[3] == key]) == 4, 30)
    await delivery.stop()
    assert delivery.failure is None
    done = await asyncio.to_thread(committed, bootstrap, group)
    assert done[(MESSAGE_CREATED, partition)] >= placed[-1][1] + 1
    assert done == recorder.ends()


async def test_ready_means_every_later_event_is_delivered(stack: Stack, group: str) -> None:
    """A fresh consumer group starts at the end; the end must be the one at assignment, not at
    the first fetch, or events committed right after the gateway said ready are skipped."""
    bootstrap = stack.kafka.bootstrap_servers
    recorder = Recorder()
    delivery = await started(stack, group, recorder)
    conversations = [uuid.uuid4() for _ in range(12)]  # spread over the partitions
    await asyncio.to_thread(produce, bootstrap, [(c, event(c, 1, [])) for c in conversations])
    try:
        await recorder.wait_for({str(c).encode() for c in conversations}, timeout_s=20)
    finally:
        await delivery.stop()


def consumer_groups(bootstrap: str) -> set[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    listed = admin.list_consumer_groups(request_timeout=10).result(timeout=10)
    return {g.group_id for g in listed.valid}


async def test_a_restarted_instance_reads_a_topic_added_while_it_was_down(stack: Stack) -> None:
    """An upgrade adds a topic and restarts the gateways: the restarted instance is assigned
    the new topic as well and delivers its events. (With static membership the group handed
    the rejoining member its earlier assignment, and the new topic went unread: `realchat
    chaos` saw a gateway miss every edit for minutes.) A stopped process deletes its group."""
    bootstrap = stack.kafka.bootstrap_servers
    existing = await asyncio.to_thread(create_topic, bootstrap, 2, 1)
    added = f"test.{uuid.uuid4().hex[:10]}"
    instance = f"upgrade-{uuid.uuid4().hex[:8]}"

    async def run(recorder: Recorder) -> tuple[KafkaDelivery, str]:
        group = group_id(instance)
        topics = [existing, added]
        config = consumer_config(bootstrap, group)
        delivery = KafkaDelivery(config, recorder, fresh_start_at_end=True, topics=topics)
        delivery.start()
        assert await delivery.wait_assigned(timeout_s=30)
        return delivery, group

    before, before_group = await run(Recorder())
    await before.stop()
    assert before.failure is None
    assert before_group in await asyncio.to_thread(consumer_groups, bootstrap)
    assert await before.delete_group()
    assert before_group not in await asyncio.to_thread(consumer_groups, bootstrap)

    await asyncio.to_thread(create_topic, bootstrap, 2, 1, added)
    recorder = Recorder()
    after, after_group = await run(recorder)
    try:
        assert after_group != before_group
        keys = [f"k{n}".encode() for n in range(8)]  # over both partitions
        await asyncio.to_thread(
            produce_all, durable_producer(bootstrap), added, [(k, b"{}") for k in keys]
        )
        await recorder.wait_for(set(keys), timeout_s=20)
    finally:
        await after.stop()


async def test_a_burst_larger_than_a_queue_reaches_a_client_that_keeps_up(
    stack: Stack, group: str
) -> None:
    hub = Hub(4)
    user = uuid.uuid4()
    sink = FakeSink()  # takes every frame at once: a client that keeps up
    connection = Connection(user, sink, queue_size=8, close_grace_s=1, on_gap=lambda c, i: None)
    hub.register(connection)
    delivery = await started(stack, group, EventDispatcher(hub))
    conversation = uuid.uuid4()
    count = 200
    await asyncio.to_thread(
        produce,
        stack.kafka.bootstrap_servers,
        [(conversation, event(conversation, seq, [user])) for seq in range(1, count + 1)],
    )
    try:
        assert await eventually(
            lambda: len(sink.frames) >= count or sink.closed is not None, timeout_s=30
        )
    finally:
        await delivery.stop()
        await connection.finish()
    assert sink.closed is None, f"cut off as a slow consumer: {sink.closed}"
    assert sink.seqs(str(conversation)) == list(range(1, count + 1))


# -- the send limiter ------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def redis_clients(stack: Stack) -> AsyncIterator[list[aioredis.Redis]]:
    """Two clients, as two gateway instances have."""
    clients = [aioredis.Redis.from_url(stack.redis.url) for _ in range(2)]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


async def start_of_a_second() -> int:
    """Wait for the clock to enter a new second (the limiter's window); return it."""
    await asyncio.sleep(1 - time.time() % 1)
    return int(time.time())


async def test_send_limiter_counts_a_user_across_instances_per_second(
    redis_clients: list[aioredis.Redis],
) -> None:
    limit = 5
    instances = [SendLimiter(client, limit) for client in redis_clients]
    for _ in range(3):
        user, other = uuid.uuid4(), uuid.uuid4()
        window = await start_of_a_second()
        verdicts = [await instances[n % 2].allow(user) for n in range(3 * limit)]
        others = [await instances[0].allow(other) for _ in range(limit)]
        if int(time.time()) == window:
            break
    else:
        pytest.fail("three rounds of limiter calls each took longer than their second")
    assert verdicts == [True] * limit + [False] * 2 * limit
    assert others == [True] * limit, "one user's count is not another's"
    key = f"realchat:sends:{user}:{window}"
    assert int(await redis_clients[0].get(key)) == 3 * limit
    assert 0 < await redis_clients[0].ttl(key) <= 2, "window keys expire"

    await start_of_a_second()
    assert await instances[1].allow(user), "a new second, a new count"


async def test_send_limiter_allows_when_redis_is_unreachable() -> None:
    nowhere = free_port_block(offsets=(0,))
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{nowhere}/0")  # as the gateway builds it
    try:
        limiter = SendLimiter(client, 1)
        assert [await limiter.allow(uuid.uuid4()) for _ in range(3)] == [True] * 3
    finally:
        await client.aclose()


async def test_a_rebalance_commits_what_was_handled_and_loses_nothing(
    stack: Stack, group: str
) -> None:
    """Known risk: a missing rebalance handler (plan §13). A second member joins the group:
    the first one's partitions are revoked, and its revoke handler commits what it handled, so
    the new owner starts exactly there: every record handled, none handled twice."""
    bootstrap = stack.kafka.bootstrap_servers
    first = Recorder()
    a = await started(stack, group, first)
    before = [uuid.uuid4() for _ in range(12)]
    await asyncio.to_thread(produce, bootstrap, [(c, event(c, 1, [])) for c in before])
    await first.wait_for({str(c).encode() for c in before})

    # Records keep coming while the second member joins: the first one is handling (and has
    # not yet committed) some of them when its partitions are taken away.
    during = [uuid.uuid4() for _ in range(200)]
    stream = asyncio.create_task(
        asyncio.to_thread(produce, bootstrap, [(c, event(c, 1, [])) for c in during])
    )
    second = Recorder()
    joining = consumer_config(bootstrap, group) | {"group.instance.id": f"{group}-b"}
    b = KafkaDelivery(joining, second)
    b.start()
    assert await b.wait_assigned(timeout_s=60)
    assert await eventually(lambda: a.assigned, timeout_s=60)
    await stream
    after = [uuid.uuid4() for _ in range(24)]
    await asyncio.to_thread(produce, bootstrap, [(c, event(c, 1, [])) for c in after])
    keys = {str(c).encode() for c in before + during + after}

    def handled() -> list[bytes]:
        return [h[3] for h in first.handled + second.handled if h[3] in keys]

    assert await eventually(lambda: set(handled()) == keys, timeout_s=60)
    await a.stop()
    await b.stop()
    assert a.failure is None
    assert b.failure is None
    assert sorted(handled()) == sorted(keys), "each record handled exactly once across the two"
    assert {h[3] for h in second.handled} & {str(c).encode() for c in before} == set()
