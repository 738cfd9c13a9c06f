"""Records and committed offsets survive a broker crash (SIGKILL) and restart.

Uses a broker of its own, so killing it does not disturb the rest of the suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from confluent_kafka import TopicPartition

from realchat.stack.supervisor import Stack
from tests.support.kafka import (
    committed_offsets,
    create_topic,
    durable_producer,
    group_consumer,
    poll_n,
    produce_all,
)
from tests.support.stacks import own_kafka

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


@pytest_asyncio.fixture(loop_scope="session")
async def lone_broker(tmp_path: Path) -> AsyncIterator[Stack]:
    async with own_kafka(tmp_path / "stack") as broker:
        yield broker


async def test_data_and_committed_offsets_survive_broker_kill_and_restart(
    lone_broker: Stack,
) -> None:
    bootstrap = lone_broker.kafka.bootstrap_servers
    topic = create_topic(bootstrap, partitions=3, replication=1)
    records = [(f"conv-{i % 5}".encode(), f"m{i}".encode()) for i in range(100)]
    produce_all(durable_producer(bootstrap), topic, records)

    consumer = group_consumer(bootstrap, "durability", topic)
    first = poll_n(consumer, 40)
    assert len(first) == 40
    consumer.commit(asynchronous=False)
    partitions = [TopicPartition(topic, p) for p in range(3)]
    committed = committed_offsets(consumer, partitions)
    consumer.close()

    await lone_broker.kill_component("kafka")
    await lone_broker.start_component("kafka")

    # Committed offsets are still there, exactly as committed.
    again = group_consumer(bootstrap, "durability", topic)
    after = committed_offsets(again, partitions)
    assert after == committed
    # The group resumes after its commit: it gets the other 60, no repeats.
    rest = poll_n(again, 60)
    again.close()
    assert len(rest) == 60
    seen = {m.value() for m in first} | {m.value() for m in rest}
    assert seen == {v for _, v in records}

    # And a fresh group reads all 100 records from the restarted broker.
    fresh = group_consumer(bootstrap, "fresh-reader", topic)
    everything = poll_n(fresh, 100)
    fresh.close()
    assert sorted(m.value() for m in everything) == sorted(v for _, v in records)
