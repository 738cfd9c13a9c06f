"""A Kafka outage does not stop the chat service, and loses or reorders nothing.

The broker (a throw-away one of this test's own) is SIGKILLed for 30 s while five conversations
keep sending: every send still succeeds (the write path needs only PostgreSQL), the outbox backs up,
and once the broker is back the publisher drains it to zero with nothing dead-lettered. A reader of
the topic then has every message of every conversation, per conversation first seen in seq order,
duplicates (from re-sends of batches whose acknowledgement was lost) only as exact repeats.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from realchat.chat.service import ChatService
from realchat.chat.store import ChatStore
from realchat.config import FaultSettings, OutboxSettings
from realchat.events.topics import MESSAGE_CREATED
from realchat.outbox.publisher import OutboxPublisher, producer_factory
from realchat.stack.supervisor import Stack
from tests.support.databases import fresh_database, new_users, utc_pool
from tests.support.outbox import (
    Expected,
    check_delivery,
    count,
    covers,
    eventually_async,
    open_tail,
    ours,
    unpublished,
)
from tests.support.processes import read_until
from tests.support.stacks import own_kafka

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

OUTBOX_SHARDS = 8
CONVERSATIONS = 5
SEND_INTERVAL_S = 0.05
OUTAGE_S = 30.0
#: The production delivery setting (no timeout: librdkafka keeps retrying through the outage).
PUBLISHER = OutboxSettings(backoff_initial_s=0.1, backoff_max_s=2)


@pytest_asyncio.fixture(loop_scope="session")
async def lone_broker(tmp_path: Path) -> AsyncIterator[Stack]:
    async with own_kafka(tmp_path / "stack") as broker:
        yield broker


@dataclass
class Senders:
    """One sender per conversation, a send every `SEND_INTERVAL_S`, each waiting for its reply."""

    service: ChatService
    members: dict[uuid.UUID, list[uuid.UUID]]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: conversation -> seq -> message_id of every acknowledged send.
    sent: Expected = field(default_factory=dict)
    #: When each send was acknowledged (monotonic clock).
    acked_at: list[float] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        for conversation in self.members:
            self.sent[conversation] = {}
            self.tasks.append(asyncio.create_task(self._send(conversation)))

    async def _send(self, conversation: uuid.UUID) -> None:
        users = self.members[conversation]
        i = 0
        while not self.stop.is_set():
            result = await self.service.send_message(
                users[i % len(users)], str(conversation), f"{conversation}-{i}", f"message {i}"
            )
            assert result.created
            assert result.message.seq == len(self.sent[conversation]) + 1
            self.sent[conversation][result.message.seq] = result.message.message_id
            self.acked_at.append(time.monotonic())
            i += 1
            await asyncio.sleep(SEND_INTERVAL_S)

    def acked_since(self, moment: float) -> int:
        return sum(1 for t in self.acked_at if t >= moment)

    def check_alive(self) -> None:
        """A sender that failed has stopped: surface its error."""
        for task in self.tasks:
            if task.done():
                task.result()
                raise AssertionError("a sender stopped early")

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)


async def _conversations(
    service: ChatService, pool: asyncpg.Pool
) -> dict[uuid.UUID, list[uuid.UUID]]:
    members: dict[uuid.UUID, list[uuid.UUID]] = {}
    for c in range(CONVERSATIONS):
        users = await new_users(pool, 3)
        record = await service.create_conversation(
            users[0], [str(u) for u in users[1:]], f"outage-{c}"
        )
        members[record.conversation_id] = users
    return members


async def test_sends_continue_through_a_30s_broker_outage_and_everything_arrives_in_order(
    stack: Stack, lone_broker: Stack
) -> None:
    bootstrap = lone_broker.kafka.bootstrap_servers
    tail = await open_tail(bootstrap, MESSAGE_CREATED)
    async with fresh_database(stack.postgres) as dsn:
        pool = await utc_pool(dsn, max_size=20)
        stop_publisher = asyncio.Event()
        publisher_task: asyncio.Task[None] | None = None
        senders: Senders | None = None
        try:
            service = ChatService(ChatStore(pool, OUTBOX_SHARDS))

            publisher = OutboxPublisher(
                pool,
                producer_factory(bootstrap, PUBLISHER.delivery_timeout_s, "outage-test-publisher"),
                PUBLISHER,
                FaultSettings(),
            )
            publisher_task = asyncio.create_task(publisher.run(stop_publisher))
            senders = Senders(service, await _conversations(service, pool))
            senders.start()

            # Before the outage, events flow end to end.
            received = await read_until(
                tail, lambda r: ours(r, set(senders.members)).total >= 100, timeout_s=30
            )
            assert ours(received, set(senders.members)).total >= 100, "nothing published"
            senders.check_alive()

            # The outage: the broker is SIGKILLed and stays down for OUTAGE_S.
            await lone_broker.kill_component("kafka")
            down_since = time.monotonic()
            await asyncio.sleep(3)
            pending_early = await unpublished(pool)
            await asyncio.sleep(OUTAGE_S - (time.monotonic() - down_since))
            acked_during = senders.acked_since(down_since)
            pending_late = await unpublished(pool)
            senders.check_alive()
            assert not publisher_task.done(), "the publisher stopped during the outage"
            # Sends kept succeeding (at least one a second per conversation, typically ~15)...
            assert acked_during >= CONVERSATIONS * OUTAGE_S, f"only {acked_during} sends"
            # ... and the outbox backed up: nothing committed since the broker died went out.
            assert pending_late > pending_early > 0
            assert pending_late >= acked_during, (pending_late, acked_during)

            await lone_broker.start_component("kafka")
            up_again = time.monotonic()
            await asyncio.sleep(5)  # sends keep coming after the restart too
            senders.check_alive()
            await senders.finish()
            sent_total = sum(len(s) for s in senders.sent.values())
            assert senders.acked_since(up_again) > 0

            pending = -1

            async def drained() -> bool:
                nonlocal pending
                pending = await unpublished(pool)
                return pending == 0

            assert await eventually_async(drained, timeout_s=120), f"{pending} never published"
            drained_after = time.monotonic() - up_again
            assert await count(pool, "SELECT count(*) FROM dead_letters") == 0
            assert await count(pool, "SELECT count(*) FROM outbox") == sent_total

            stop_publisher.set()
            await asyncio.wait_for(publisher_task, timeout=30)  # it must not hang on the way out

            received = await read_until(tail, lambda r: covers(r, senders.sent), timeout_s=60)
            delivery = check_delivery(received, senders.sent)
            print(
                f"{sent_total} sent ({acked_during} during the outage); pending "
                f"{pending_early} -> {pending_late} during it; drained {drained_after:.1f}s "
                f"after the restart; {delivery.total} records read, "
                f"{len(delivery.repeated())} seqs delivered more than once"
            )
        finally:
            if senders is not None and not senders.stop.is_set():
                senders.stop.set()
                await asyncio.gather(*senders.tasks, return_exceptions=True)
            if publisher_task is not None:
                stop_publisher.set()
                await asyncio.wait({publisher_task}, timeout=30)
                publisher_task.cancel()
                await asyncio.gather(publisher_task, return_exceptions=True)
            await pool.close()
            tail.close()
