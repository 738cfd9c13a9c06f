"""Presence stays true through faults, on a throw-away stack (heartbeat 1 s, TTL 3 s, sweep 2 s):
a SIGKILLed gateway's users go offline by expiry, Redis restarted empty comes back from the
heartbeats without announcing anyone falsely offline, and a presence service SIGKILLed while
users come and go announces what it missed once it is back."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from realchat.events.models import PresenceChanged
from realchat.events.topics import PRESENCE_OFFLINE, PRESENCE_ONLINE
from realchat.presence.registry import PresenceRegistry
from realchat.stack.supervisor import Stack
from realchat.storage.redis import redis_client
from tests.support.client import User, connect, create_conversation, register
from tests.support.rest import call
from tests.support.stacks import throwaway_settings
from tests.support.topics import TopicTail
from tests.support.waiting import eventually, eventually_async

pytestmark = pytest.mark.asyncio(loop_scope="session")


class PresenceWorld:
    def __init__(self, stack: Stack, http: aiohttp.ClientSession) -> None:
        self.stack = stack
        self.http = http
        self.base = f"http://127.0.0.1:{stack.app_settings.http.port}"
        self.presence = stack.app_settings.presence
        bootstrap = stack.kafka.bootstrap_servers
        self.tails = [TopicTail(bootstrap, t) for t in (PRESENCE_ONLINE, PRESENCE_OFFLINE)]
        self.redis = redis_client(stack.redis.url)
        self.registry = PresenceRegistry(self.redis, self.presence.key_ttl_s)

    def events(self, user: User) -> list[PresenceChanged]:
        found = [
            r.event
            for tail in self.tails
            for r in tail.read(until=10**9, timeout_s=0.3)
            if isinstance(r.event, PresenceChanged) and str(r.event.user_id) == user.user_id
        ]
        return sorted(found, key=lambda e: e.version)

    def statuses(self, user: User) -> list[str]:
        return [e.status for e in self.events(user)]

    async def announced(self, viewer: User, user: User) -> str | None:
        url = f"{self.base}/v1/presence?user_ids={user.user_id}"
        status, body = await call(self.http, "GET", url, headers=viewer.auth)
        assert status == 200, body
        return next((u["status"] for u in body["users"]), None)

    async def wait_statuses(self, user: User, expected: list[str], timeout_s: float) -> float:
        """Until `user`'s announced transitions are `expected`; the seconds it took."""
        started = time.monotonic()
        assert await eventually(lambda: self.statuses(user) == expected, timeout_s), self.statuses(
            user
        )
        return time.monotonic() - started

    async def close(self) -> None:
        for tail in self.tails:
            tail.close()
        await self.redis.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def world(tmp_path: Path) -> AsyncIterator[PresenceWorld]:
    stack = Stack(throwaway_settings(tmp_path / "stack"), report=print)
    # No keep-alive: a pooled connection to the gateway this test SIGKILLs would be left for the
    # garbage collector (a ResourceWarning, an error in this suite).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        try:
            await stack.up()
            world = PresenceWorld(stack, http)
            yield world
            await world.close()
        finally:
            await stack.down()


async def users_in_one_conversation(world: PresenceWorld, *names: str) -> list[User]:
    users = [await register(world.http, world.base, n) for n in names]
    await create_conversation(world.http, world.base, users[0], *users[1:])
    return users


async def test_gateway_killed_redis_restarted_presence_killed(world: PresenceWorld) -> None:
    p = world.presence
    observer, alice, dave, carol, erin = await users_in_one_conversation(
        world, "observer", "alice", "dave", "carol", "erin"
    )

    # 1. The gateway holding alice is SIGKILLed: her key expires, she goes offline.
    alices = await connect(world.http, world.base, alice)
    await world.wait_statuses(alice, ["online"], timeout_s=15)
    await world.stack.kill_component("gateway")
    killed_at = time.monotonic()
    await world.wait_statuses(alice, ["online", "offline"], timeout_s=p.key_ttl_s + 30)
    offline_after = time.monotonic() - killed_at
    print(
        f"presence: offline {offline_after:.2f} s after the gateway's SIGKILL (TTL {p.key_ttl_s} s)"
    )
    assert offline_after < p.key_ttl_s + p.sweep_interval_s + 5
    await alices.close()
    await world.stack.start_component("gateway")

    # 2. Redis is SIGKILLed and restarted empty while alice and dave are connected; dave
    #    leaves while it is down. Alice's device is back within a heartbeat; she is never
    #    announced offline; dave is, once the grace after the restart is over.
    alices = await connect(world.http, world.base, alice, device="phone")
    daves = await connect(world.http, world.base, dave)
    await world.wait_statuses(alice, ["online", "offline", "online"], timeout_s=15)
    await world.wait_statuses(dave, ["online"], timeout_s=15)
    await world.stack.kill_component("redis")
    await daves.close()
    await world.stack.start_component("redis")
    restarted_at = time.monotonic()
    devices = await eventually_async(
        lambda: world.registry.live_devices(uuid.UUID(alice.user_id)), bool, timeout_s=30
    )
    back_after = time.monotonic() - restarted_at
    print(
        f"presence: device keys back {back_after:.2f} s after Redis restarted "
        f"(heartbeat {p.heartbeat_s} s)"
    )
    assert devices == ["phone"]
    assert back_after < p.heartbeat_s + 2
    await world.wait_statuses(dave, ["online", "offline"], timeout_s=30)
    # Past the grace and a sweep: still no offline for alice, and the stored state agrees.
    await world.wait_statuses(alice, ["online", "offline", "online"], timeout_s=1)
    assert await world.announced(observer, alice) == "online"
    assert await world.announced(observer, dave) == "offline"

    # 3. The presence service is SIGKILLed; carol comes, alice leaves, erin comes and goes.
    #    Back up, it announces what it missed: carol online, alice offline, nothing for erin.
    await world.stack.kill_component("presence")
    carols = await connect(world.http, world.base, carol)
    await alices.close()
    erins = await connect(world.http, world.base, erin)
    await erins.close()
    await world.stack.start_component("presence")
    await world.wait_statuses(carol, ["online"], timeout_s=15)
    await world.wait_statuses(alice, ["online", "offline", "online", "offline"], timeout_s=15)
    assert world.statuses(erin) == []
    assert await world.announced(observer, carol) == "online"
    assert await world.announced(observer, alice) == "offline"
    assert await world.announced(observer, erin) == "offline"
    # Versions count transitions: no gaps, no duplicates, whatever crashed in between.
    for user in (alice, dave, carol):
        assert [e.version for e in world.events(user)] == list(
            range(1, len(world.events(user)) + 1)
        )
    await carols.close()
