"""The presence data model and tracker on the real Redis and PostgreSQL of the test stack (a
Redis database of its own, a fresh PostgreSQL database): compare-and-delete, pruning, replicas
racing on the same users, and the grace after Redis lost its data."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from realchat.config import PresenceSettings
from realchat.presence.registry import EPOCH_KEY, Device, PresenceRegistry
from realchat.presence.store import PresenceStore
from realchat.presence.tracker import PresenceTracker
from realchat.stack.supervisor import Stack
from tests.support.databases import fresh_database, utc_pool
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: A Redis database of these tests' own: the e2e services use database 0 meanwhile.
REDIS_DB = 7
SETTINGS = PresenceSettings(heartbeat_s=0.4, key_ttl_s=2, sweep_interval_s=0.5, workers=4)


@pytest_asyncio.fixture(loop_scope="session")
async def redis(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(stack.redis.url.rsplit("/", 1)[0] + f"/{REDIS_DB}")
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    async with fresh_database(stack.postgres) as dsn:
        created = await utc_pool(dsn)
        try:
            yield created
        finally:
            await created.close()


def tracker(redis: aioredis.Redis, pool: asyncpg.Pool) -> PresenceTracker:
    return PresenceTracker(
        PresenceRegistry(redis, SETTINGS.key_ttl_s),
        PresenceStore(pool, outbox_shards=4),
        redis.pubsub(),
        SETTINGS,
        database=REDIS_DB,
    )


async def announced(pool: asyncpg.Pool, user_id: uuid.UUID) -> list[tuple[str, int]]:
    """(status, version) of every transition written to the outbox for the user, in order."""
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE partition_key = $1 ORDER BY id", str(user_id)
    )
    events = [json.loads(r["payload"]) for r in rows]
    return [(e["status"], e["version"]) for e in events]


async def test_a_device_key_is_deleted_only_by_the_connection_that_owns_it(
    redis: aioredis.Redis,
) -> None:
    registry = PresenceRegistry(redis, ttl_s=30)
    user = uuid.uuid4()
    old, new = Device(user, "phone", "conn-1"), Device(user, "phone", "conn-2")
    await registry.register([old])
    await registry.register([new])  # the phone reconnected, maybe through another gateway
    assert await registry.unregister(old) is False
    assert await registry.live_devices(user) == ["phone"]
    assert await registry.unregister(new) is True
    assert await registry.live_devices(user) == []


async def test_expired_devices_are_pruned_and_observation_sees_the_epoch(
    redis: aioredis.Redis,
) -> None:
    registry = PresenceRegistry(redis, ttl_s=30)
    user = uuid.uuid4()
    await registry.register([Device(user, "a", "c1"), Device(user, "b", "c2")])
    await redis.delete(f"user:{user}:a")  # as if it expired
    seen = await registry.observe(user)
    assert seen.devices == ["b"]
    assert await redis.smembers(f"presence:devices:{user}") == {b"b"}
    await redis.delete(EPOCH_KEY)
    assert (await registry.observe(user)).epoch is None
    epoch = await registry.mark_epoch()
    again = await registry.observe(user)
    assert again.epoch == epoch
    assert again.now >= epoch
    assert await registry.mark_epoch() == epoch  # recorded once


async def test_replicas_racing_on_the_same_users_announce_each_transition_once(
    redis: aioredis.Redis, pool: asyncpg.Pool
) -> None:
    registry = PresenceRegistry(redis, SETTINGS.key_ttl_s)
    await registry.mark_epoch()
    await asyncio.sleep(SETTINGS.heartbeat_s * 1.5)  # past the grace of a fresh epoch
    replicas = [tracker(redis, pool) for _ in range(3)]
    users = [uuid.uuid4() for _ in range(10)]
    devices = [Device(u, "d", f"conn-{u}") for u in users]

    await registry.register(devices)
    await asyncio.gather(*(r.reconcile(u) for r in replicas for u in users for _ in range(3)))
    for device in devices[:5]:
        await registry.unregister(device)
    await asyncio.gather(*(r.reconcile(u) for r in replicas for u in users for _ in range(3)))

    for user in users[:5]:
        assert await announced(pool, user) == [("online", 1), ("offline", 2)]
    for user in users[5:]:
        assert await announced(pool, user) == [("online", 1)]


async def test_notifications_and_sweeps_follow_connects_expiries_and_a_lost_redis(
    redis: aioredis.Redis, pool: asyncpg.Pool
) -> None:
    replicas = [tracker(redis, pool) for _ in range(2)]
    stop = asyncio.Event()
    runs = [asyncio.create_task(r.run(stop)) for r in replicas]
    registry = PresenceRegistry(redis, SETTINGS.key_ttl_s)
    try:
        await eventually_async(_ready(replicas), bool, timeout_s=10)
        await asyncio.sleep(SETTINGS.heartbeat_s * 1.5)  # the fresh epoch's grace
        stays, leaves, expires = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await registry.register([Device(u, "d", "c") for u in (stays, leaves, expires)])
        for user in (stays, leaves, expires):
            assert await _settled(pool, user, [("online", 1)])
        await registry.unregister(Device(leaves, "d", "c"))
        assert await _settled(pool, leaves, [("online", 1), ("offline", 2)])
        # No refresh for `expires`: its key runs out (TTL), the expiry notification follows.
        keep_alive = asyncio.create_task(_refresh(registry, Device(stays, "d", "c")))
        assert await _settled(pool, expires, [("online", 1), ("offline", 2)], timeout_s=15)

        # Redis loses everything; `stays`'s next heartbeat comes almost a full interval later,
        # after a sweep has seen no device of hers: still never announced offline.
        keep_alive.cancel()
        await redis.flushdb()
        await asyncio.sleep(SETTINGS.heartbeat_s * 1.3)
        keep_alive = asyncio.create_task(_refresh(registry, Device(stays, "d", "c")))
        await asyncio.sleep(SETTINGS.heartbeat_s * 1.5 + SETTINGS.sweep_interval_s * 2)
        assert await announced(pool, stays) == [("online", 1)]
        keep_alive.cancel()
        assert await _settled(pool, stays, [("online", 1), ("offline", 2)], timeout_s=15)
    finally:
        stop.set()
        await asyncio.gather(*runs)


def _ready(replicas: list[PresenceTracker]) -> object:
    async def probe() -> bool:
        return all(r.subscribed for r in replicas)

    return probe


async def _refresh(registry: PresenceRegistry, device: Device) -> None:
    while True:
        await registry.register([device])
        await asyncio.sleep(SETTINGS.heartbeat_s)


async def _settled(
    pool: asyncpg.Pool, user: uuid.UUID, expected: list[tuple[str, int]], timeout_s: float = 10
) -> bool:
    async def probe() -> list[tuple[str, int]]:
        return await announced(pool, user)

    return await eventually_async(probe, lambda seen: seen == expected, timeout_s) == expected
