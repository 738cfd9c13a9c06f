"""The notifier process (`realchat notifier`): the Kafka consumer that records pending
notifications, the scheduler that sends the due ones, and the ops endpoint.

Any number of replicas may run: they share the consumer group's partitions and claim due rows
with SKIP LOCKED, so each notification is decided by one replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import aiohttp
import asyncpg
import structlog

from realchat.config import NotifierSettings, Settings
from realchat.events.models import MessageCreated
from realchat.notifier import metrics, store
from realchat.notifier.consumer import MessageConsumer, Recorder, notifier_consumer_config
from realchat.notifier.scheduler import Scheduler
from realchat.notifier.webhook import Webhook
from realchat.observability.ops import start_ops_server
from realchat.storage.migrations import schema_is_current
from realchat.storage.pool import DATABASE_ERRORS, create_pool

log = structlog.get_logger(__name__)

#: How often the backlog gauges are refreshed.
GAUGE_INTERVAL_S = 2.0


class WebhookNotConfigured(RuntimeError):  # noqa: N818
    pass


def recorder(pool: asyncpg.Pool, settings: NotifierSettings) -> Recorder:
    """What the consumer calls with each batch of message events."""

    async def record(events: Sequence[MessageCreated]) -> None:
        rows = store.recipients(events)
        async with pool.acquire() as conn:
            await store.record(conn, rows, settings)
        metrics.EVENTS_RECORDED.inc(len(events))

    return record


async def export_backlog(pool: asyncpg.Pool, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            count, overdue = await store.backlog(pool)
            metrics.PENDING.set(count)
            metrics.OVERDUE.set(overdue)
        except DATABASE_ERRORS as exc:
            log.warning("notification backlog not read", error=repr(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), GAUGE_INTERVAL_S)


class ConsumerFailedError(RuntimeError):
    pass


async def watch_consumer(consumer: MessageConsumer, stop: asyncio.Event) -> None:
    """A dead consumer thread ends the process (to be restarted) instead of leaving a notifier
    that sends what is pending and never learns of new messages."""
    while not stop.is_set():
        if consumer.failure is not None:
            raise ConsumerFailedError("the Kafka consumer died") from consumer.failure
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), GAUGE_INTERVAL_S)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    n = settings.notifier
    if n.webhook_url is None:
        raise WebhookNotConfigured("REALCHAT_NOTIFIER__WEBHOOK_URL is not set")
    secret = n.webhook_secret.get_secret_value().encode() if n.webhook_secret else None
    pool = await create_pool(settings.database, "realchat-notifier")
    http = aiohttp.ClientSession()
    consumer = MessageConsumer(
        notifier_consumer_config(settings.kafka.bootstrap_servers), recorder(pool, n)
    )
    scheduler = Scheduler(pool, Webhook(http, n.webhook_url, secret, n.webhook_timeout_s), n)

    async def ready() -> bool:
        return consumer.failure is None and await schema_is_current(pool)

    ops = await start_ops_server(settings.ops_host, n.ops_port, ready)
    consumer.start()
    log.info("notifier running", ops_port=n.ops_port, delay_s=n.delay_s, collapse_s=n.collapse_s)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(scheduler.run(stop))
            tasks.create_task(export_backlog(pool, stop))
            tasks.create_task(watch_consumer(consumer, stop))
    finally:
        await consumer.stop(timeout_s=10.0)
        await ops.cleanup()
        await http.close()
        await pool.close()
        log.info("notifier stopped")
