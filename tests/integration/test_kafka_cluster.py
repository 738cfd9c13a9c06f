"""Three KRaft nodes, replication 3, min.insync.replicas 2: losing one node loses nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from confluent_kafka.admin import AdminClient

from realchat.events.topics import MESSAGE_CREATED
from realchat.stack.supervisor import Stack
from tests.support.kafka import (
    QUIET,
    create_topic,
    durable_producer,
    group_consumer,
    poll_n,
    produce_all,
)
from tests.support.stacks import own_kafka
from tests.support.waiting import eventually

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


@pytest_asyncio.fixture(loop_scope="session")
async def cluster(tmp_path: Path) -> AsyncIterator[Stack]:
    async with own_kafka(tmp_path / "stack", nodes=3) as broker:
        yield broker


def isr_sizes(bootstrap: str, topic: str) -> list[int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap, **QUIET}).list_topics(topic, timeout=10)
    return [len(p.isrs) for p in metadata.topics[topic].partitions.values()]


async def test_acks_all_survives_sigkill_of_one_broker_which_then_rejoins(cluster: Stack) -> None:
    bootstrap = cluster.kafka.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    project_topic = admin.list_topics(MESSAGE_CREATED, timeout=10).topics[MESSAGE_CREATED]
    assert all(len(p.replicas) == 3 for p in project_topic.partitions.values())

    topic = create_topic(bootstrap, partitions=6, replication=3, **{"min.insync.replicas": "2"})
    producer = durable_producer(bootstrap)
    before = [(f"c{i % 6}".encode(), f"before-{i}".encode()) for i in range(60)]
    produce_all(producer, topic, before)

    await cluster.kill_component("kafka-2")
    during = [(f"c{i % 6}".encode(), f"during-{i}".encode()) for i in range(60)]
    produce_all(producer, topic, during, timeout_s=90)

    await cluster.start_component("kafka-2")
    rejoined = await eventually(lambda: isr_sizes(bootstrap, topic) == [3] * 6, timeout_s=90)
    assert rejoined, f"kafka-2 did not rejoin every ISR: {isr_sizes(bootstrap, topic)}"
    assert 2 in admin.list_topics(timeout=10).brokers

    reader = group_consumer(bootstrap, "cluster-reader", topic)
    got = poll_n(reader, 120)
    reader.close()
    assert sorted(m.value() for m in got) == sorted(v for _, v in before + during)
