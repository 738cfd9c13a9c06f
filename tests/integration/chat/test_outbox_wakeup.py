"""The chat service wakes the outbox publisher after each commit: on an idle stack an event
reaches Kafka in milliseconds even when the publisher's poll is seconds away."""

from __future__ import annotations

import asyncio
import functools
import statistics
import uuid

import asyncpg
import pytest

from realchat.chat.service import ChatService
from realchat.chat.store import ChatStore
from realchat.config import OutboxSettings
from realchat.outbox.publisher import OutboxPublisher, producer_factory
from realchat.outbox.wakeup import CHANNEL, CommitNotifier, WakeupListener, encode_shards
from realchat.outbox.writer import outbox_shard
from realchat.stack.supervisor import Stack
from tests.integration.chat.conftest import OUTBOX_SHARDS
from tests.support.databases import new_users
from tests.support.waiting import eventually, eventually_async

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: A poll this slow would show in every latency below if the wake-up did not work.
SLOW_POLL = OutboxSettings(poll_interval_s=5.0)


async def publish_delay_s(pool: asyncpg.Pool, message_id: uuid.UUID) -> float | None:
    """From the message's commit-time timestamp to the outbox row's published mark."""
    delay: float | None = await pool.fetchval(
        """SELECT extract(epoch FROM o.published_at - m.created_at)
             FROM messages m
             JOIN outbox o ON o.partition_key = m.conversation_id::text
              AND convert_from(o.payload, 'UTF8')::jsonb ->> 'message_id' = m.id::text
            WHERE m.id = $1""",
        message_id,
    )
    return delay


@pytest.mark.parametrize("hinted", [True, False], ids=["shards-named", "scan"])
async def test_an_idle_send_is_published_without_waiting_for_the_poll(
    pool: asyncpg.Pool, stack: Stack, hinted: bool
) -> None:
    """With the shards the notification names (no scan), and with a scan after each wake-up
    (a publisher that ignores the names): a wrong shard would wait for the 5 s poll."""
    notifier = CommitNotifier(pool)
    service = ChatService(ChatStore(pool, OUTBOX_SHARDS), written=notifier)
    listener = WakeupListener(pool)
    bootstrap = stack.kafka.bootstrap_servers
    publisher = OutboxPublisher(
        pool,
        producer_factory(bootstrap, 0, "test-wakeup"),
        SLOW_POLL,
        wakeups=listener.woken,
        hints=listener.take_hints if hinted else (lambda: None),
    )
    alice, bob = await new_users(pool, 2)
    conversation = str((await service.create_conversation(alice, [str(bob)], "")).conversation_id)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(listener.run(stop)), asyncio.create_task(publisher.run(stop))]
    delays: list[float] = []
    try:
        await asyncio.sleep(0.5)  # the listener is listening, the first (empty) scan is done
        for n in range(20):
            sent = await service.send_message(alice, conversation, f"k{n}", "hi")
            delay = await eventually_async(
                functools.partial(publish_delay_s, pool, sent.message.message_id),
                lambda d: d is not None,
                timeout_s=10,
            )
            assert delay is not None
            delays.append(delay)
            await asyncio.sleep(0.05)  # idle between messages, like a 1:1 chat
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await notifier.close()
    delays.sort()
    assert delays[-2] < SLOW_POLL.poll_interval_s / 5, f"publish delays (s): {delays}"
    p50_ms, max_ms = statistics.median(delays) * 1000, delays[-1] * 1000
    print(f"send -> published: p50 {p50_ms:.1f} ms, max {max_ms:.1f} ms")


async def test_an_idle_send_wakes_the_publisher_from_its_own_transaction(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    """The only batch in flight notifies in its own transaction (the notification arrives with
    the commit, naming the shard written); the post-commit wake-up is not called for it. A
    replay writes no event and wakes nobody."""
    notified: list[str] = []
    called: list[object] = []
    service = ChatService(ChatStore(pool, OUTBOX_SHARDS), written=called.append)
    (alice,) = await new_users(pool, 1)
    conversation = await service.create_conversation(alice, [], "")
    conversation_id = str(conversation.conversation_id)
    called.clear()  # the conversation's own membership event
    listening = await asyncpg.connect(db_dsn)
    try:
        await listening.add_listener(CHANNEL, lambda *args: notified.append(str(args[3])))
        sent = await service.send_message(alice, conversation_id, "k1", "hi")
        assert await eventually(lambda: bool(notified), timeout_s=5, interval_s=0.01)
        shard = outbox_shard(conversation.conversation_id, OUTBOX_SHARDS)
        assert (notified, called) == ([encode_shards([shard])], [])
        replay = await service.send_message(alice, conversation_id, "k1", "hi")
        assert (replay.created, replay.message.seq) == (False, sent.message.seq)
        await asyncio.sleep(0.2)
        assert (len(notified), called) == (1, [])
    finally:
        await listening.close()
