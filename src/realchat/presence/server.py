"""The presence service process (`realchat presence`): the tracker plus its ops endpoint.

Any number of replicas may run: each follows every notification and sweeps on its own, and the
row lock in PostgreSQL lets exactly one of them announce each transition.
"""

from __future__ import annotations

import asyncio

import structlog

from realchat.config import Settings
from realchat.observability.ops import start_ops_server
from realchat.presence.registry import PresenceRegistry
from realchat.presence.store import PresenceStore
from realchat.presence.tracker import PresenceTracker
from realchat.storage.migrations import schema_is_current
from realchat.storage.pool import create_pool
from realchat.storage.redis import redis_client

log = structlog.get_logger(__name__)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    p = settings.presence
    redis = redis_client(settings.redis.url)
    pool = await create_pool(settings.database, "realchat-presence")
    registry = PresenceRegistry(redis, p.key_ttl_s)
    database = redis.connection_pool.connection_kwargs.get("db", 0)
    tracker = PresenceTracker(
        registry,
        PresenceStore(pool, settings.chat.outbox_shards),
        redis.pubsub(),
        p,
        database=int(database),
    )

    async def ready() -> bool:
        return tracker.subscribed and await schema_is_current(pool)

    ops = await start_ops_server(settings.ops_host, p.ops_port, ready)
    log.info("presence service running", ops_port=p.ops_port, sweep_interval_s=p.sweep_interval_s)
    try:
        await tracker.run(stop)
    finally:
        await ops.cleanup()
        await pool.close()
        await redis.aclose()
        log.info("presence service stopped")
