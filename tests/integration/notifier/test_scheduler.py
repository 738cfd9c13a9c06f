"""The notifier's durable state against PostgreSQL: recording is idempotent, due rows are
decided once across replicas, failures are retried and then dead-lettered, and a notification
sent starts the collapse interval. The webhook is a stand-in that records what it was given."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest
import pytest_asyncio

from realchat.config import NotifierSettings
from realchat.events.models import MessageCreated
from realchat.notifier import store
from realchat.notifier.decision import WebhookVerdict
from realchat.notifier.preferences import PreferencesStore
from realchat.notifier.scheduler import Scheduler
from realchat.notifier.webhook import WebhookResult
from realchat.stack.supervisor import Stack
from tests.support.databases import fresh_database, utc_pool

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    async with fresh_database(stack.postgres) as dsn:
        created = await utc_pool(dsn)
        try:
            yield created
        finally:
            await created.close()


@dataclass
class StandInWebhook:
    """Answers with `verdict`; records the keys and bodies it was given."""

    verdict: WebhookVerdict = WebhookVerdict.ACCEPTED
    calls: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    #: Held this long before answering (to keep a batch's transaction open).
    latency_s: float = 0.0

    async def post(self, key: str, body: bytes) -> WebhookResult:
        self.calls.append((key, msgspec.json.decode(body)))
        await asyncio.sleep(self.latency_s)
        error = "" if self.verdict is WebhookVerdict.ACCEPTED else "HTTP 503"
        return WebhookResult(self.verdict, error)


SETTINGS = NotifierSettings(
    webhook_url="http://unused", delay_s=0, collapse_s=60, max_attempts=3, backoff_initial_s=0.01
)


async def conversation(pool: asyncpg.Pool, *members: uuid.UUID) -> uuid.UUID:
    cid = uuid.uuid4()
    await pool.execute(
        "INSERT INTO conversations (id, created_by) VALUES ($1, $2)", cid, members[0]
    )
    for member in members:
        await pool.execute(
            "INSERT INTO conversation_members (conversation_id, user_id) VALUES ($1, $2)",
            cid,
            member,
        )
    return cid


def message(
    cid: uuid.UUID, seq: int, sender: uuid.UUID, *to: uuid.UUID, age_s: float = 1.0
) -> MessageCreated:
    return MessageCreated(
        event_id=uuid.uuid4(),
        conversation_id=cid,
        seq=seq,
        message_id=uuid.uuid4(),
        sender_id=sender,
        content="x",
        created_at=datetime.now(UTC) - timedelta(seconds=age_s),
        recipients=[sender, *to],
    )


async def record(pool: asyncpg.Pool, *events: MessageCreated) -> None:
    async with pool.acquire() as conn:
        await store.record(conn, store.recipients(events), SETTINGS)


async def with_device(pool: asyncpg.Pool, user: uuid.UUID) -> None:
    await PreferencesStore(pool, 5).register(user, "apns", f"token-{user}")


async def pending_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM pending_notifications ORDER BY user_id")


async def test_a_burst_collapses_into_one_row_and_redelivery_changes_nothing(
    pool: asyncpg.Pool,
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    cid = await conversation(pool, alice, bob)
    burst = [message(cid, seq, alice, bob) for seq in (1, 2, 3)]
    await record(pool, *burst[:2])
    await record(pool, *burst)  # the first two again, as after a consumer restart
    await record(pool, burst[2])
    [row] = await pending_rows(pool)
    assert row["user_id"] == bob  # never the sender
    assert (row["first_seq"], row["last_seq"], row["message_count"]) == (1, 3, 3)


async def test_old_messages_notify_no_one(pool: asyncpg.Pool) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    cid = await conversation(pool, alice, bob)
    await record(pool, message(cid, 1, alice, bob, age_s=SETTINGS.max_message_age_s + 60))
    assert await pending_rows(pool) == []
    await record(pool, message(cid, 2, alice, bob))
    [row] = await pending_rows(pool)
    assert (row["first_seq"], row["message_count"]) == (2, 1)


async def test_a_due_notification_is_sent_once_and_starts_the_collapse_interval(
    pool: asyncpg.Pool,
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    cid = await conversation(pool, alice, bob)
    await with_device(pool, bob)
    await record(pool, message(cid, 1, alice, bob), message(cid, 2, alice, bob))
    webhook = StandInWebhook()
    scheduler = Scheduler(pool, webhook, SETTINGS)  # type: ignore[arg-type]
    assert await scheduler.run_batch() == 1
    [(key, body)] = webhook.calls
    assert body["idempotency_key"] == key
    assert (body["message_count"], body["first_seq"], body["last_seq"]) == (2, 1, 2)
    assert body["devices"][0]["token"] == f"token-{bob}"  # type: ignore[index]
    assert await pending_rows(pool) == []

    # A re-delivered old event is done with; a new message waits out the collapse interval.
    await record(pool, message(cid, 2, alice, bob), message(cid, 3, alice, bob))
    [row] = await pending_rows(pool)
    assert row["first_seq"] == 3
    assert row["due_at"] - datetime.now(UTC) > timedelta(seconds=SETTINGS.collapse_s - 5)
    assert await scheduler.run_batch() == 0


async def test_read_messages_are_suppressed(pool: asyncpg.Pool) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    cid = await conversation(pool, alice, bob)
    await with_device(pool, bob)
    await record(pool, message(cid, 1, alice, bob))
    await pool.execute(
        "UPDATE conversation_members SET acked_seq = 1 WHERE conversation_id = $1 AND user_id = $2",
        cid,
        bob,
    )
    webhook = StandInWebhook()
    assert await Scheduler(pool, webhook, SETTINGS).run_batch() == 1  # type: ignore[arg-type]
    assert webhook.calls == []
    assert await pending_rows(pool) == []


async def test_failures_are_retried_with_the_same_key_then_dead_lettered(
    pool: asyncpg.Pool,
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    cid = await conversation(pool, alice, bob)
    await with_device(pool, bob)
    await record(pool, message(cid, 1, alice, bob))
    webhook = StandInWebhook(verdict=WebhookVerdict.RETRY)
    scheduler = Scheduler(pool, webhook, SETTINGS)  # type: ignore[arg-type]
    for attempt in range(1, SETTINGS.max_attempts + 1):
        await pool.execute("UPDATE pending_notifications SET due_at = now()")  # backoff passed
        assert await scheduler.run_batch() == 1
        assert len(webhook.calls) == attempt
    assert {key for key, _ in webhook.calls} == {webhook.calls[0][0]}
    assert [body["attempt"] for _, body in webhook.calls] == [1, 2, 3]
    assert await pending_rows(pool) == []
    [dead] = await pool.fetch("SELECT * FROM notification_dead_letters")
    assert str(dead["idempotency_key"]) == webhook.calls[0][0]
    assert dead["attempts"] == SETTINGS.max_attempts
    assert dead["error"] == "HTTP 503"


async def test_a_refused_notification_is_dead_lettered_at_once(pool: asyncpg.Pool) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    cid = await conversation(pool, alice, bob)
    await with_device(pool, bob)
    await record(pool, message(cid, 1, alice, bob))
    webhook = StandInWebhook(verdict=WebhookVerdict.REJECTED)
    assert await Scheduler(pool, webhook, SETTINGS).run_batch() == 1  # type: ignore[arg-type]
    assert len(webhook.calls) == 1
    assert await pool.fetchval("SELECT count(*) FROM notification_dead_letters") == 1


async def test_replicas_share_due_notifications_and_send_each_once(pool: asyncpg.Pool) -> None:
    alice = uuid.uuid4()
    users = [uuid.uuid4() for _ in range(20)]
    for user in users:
        cid = await conversation(pool, alice, user)
        await with_device(pool, user)
        await record(pool, message(cid, 1, alice, user))
    webhook = StandInWebhook(latency_s=0.05)
    small = SETTINGS.model_copy(update={"batch_size": 4})
    replicas = [Scheduler(pool, webhook, small) for _ in range(3)]  # type: ignore[arg-type]

    async def drain(scheduler: Scheduler) -> int:
        claimed = 0
        while handled := await scheduler.run_batch():
            claimed += handled
        return claimed

    claimed = await asyncio.gather(*(drain(r) for r in replicas))
    assert sum(claimed) == len(users)
    assert sum(1 for c in claimed if c > 0) > 1  # the work was shared
    assert sorted(body["user_id"] for _, body in webhook.calls) == sorted(map(str, users))
