"""Known risk: a memory leak in the shard registry (plan §13).

Connections come and go in large numbers on a gateway of its own; afterwards the registry (users
in the shards), the presence device table and the open-connection gauge are back to zero, no
device key is left in Redis, and the gateway's RSS did not grow with the number of cycles. CI
runs a few thousand cycles; `make chaos-long` runs 100,000 (REALCHAT_REGISTRY_CYCLES).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from realchat.presence.registry import PresenceRegistry
from realchat.storage.redis import redis_client
from tests.e2e.conftest import RealChat
from tests.support.client import User, register
from tests.support.gateways import ExtraGateway, extra_gateway
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.asyncio(loop_scope="session")

CYCLES = int(os.environ.get("REALCHAT_REGISTRY_CYCLES", "3000"))
CONCURRENCY = 50
MiB = 1024 * 1024


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(realchat: RealChat, tmp_path: Path) -> AsyncIterator[ExtraGateway]:
    # Device keys outlive the whole run (TTL 10 min): a key still there at the end was never
    # deleted by its connection's disconnect, it cannot have quietly expired.
    long_ttl = {"REALCHAT_PRESENCE__KEY_TTL_S": "600", "REALCHAT_PRESENCE__HEARTBEAT_S": "200"}
    async with extra_gateway(realchat.services, tmp_path / "gateway", long_ttl) as extra:
        yield extra


async def cycle(
    http: aiohttp.ClientSession, url: str, users: list[User], rounds: int, start: int
) -> None:
    for n in range(rounds):
        # Tasks start at different users: a few connections per user at once, well under the
        # gateway's limit per user.
        user = users[(start + n) % len(users)]
        async with http.ws_connect(f"{url}/v1/ws?token={user.token}", heartbeat=None) as ws:
            hello = await ws.receive_json(timeout=30)
            assert hello["type"] == "hello"


async def cycles(http: aiohttp.ClientSession, url: str, users: list[User], total: int) -> None:
    per_task = total // CONCURRENCY
    await asyncio.gather(
        *(cycle(http, url, users, per_task, start) for start in range(CONCURRENCY))
    )


async def test_connect_disconnect_cycles_leave_the_registry_empty_and_rss_flat(
    realchat: RealChat, gateway: ExtraGateway
) -> None:
    redis = redis_client(str(realchat.services.redis.url))
    registry = PresenceRegistry(redis, ttl_s=60)
    try:
        async with aiohttp.ClientSession() as http:
            users = [await register(http, realchat.base_url, f"leak{n}") for n in range(20)]
            await cycles(http, gateway.base_url, users, total=CYCLES // 5)  # warm-up
            rss_before = gateway.rss_bytes()
            started = time.monotonic()
            await cycles(http, gateway.base_url, users, total=CYCLES)
            elapsed = time.monotonic() - started
            rss_after = gateway.rss_bytes()

            def settled(samples: dict[str, float]) -> bool:
                return (
                    samples["realchat_gateway_active_connections"] == 0
                    and samples["realchat_gateway_registry_users"] == 0
                    and samples["realchat_gateway_presence_devices"] == 0
                )

            samples = await eventually_async(lambda: gateway.metrics(http), settled, 30)
            assert settled(samples), samples

            # The disconnects' deletes are queued behind each other (one Redis writer per
            # gateway, in order): they may trail the sessions' ends, never go missing.
            async def devices_left() -> int:
                left = 0
                for user in users:
                    left += len(await registry.live_devices(uuid.UUID(user.user_id)))
                return left

            assert await eventually_async(devices_left, lambda n: n == 0, timeout_s=60) == 0
        growth = rss_after - rss_before
        print(
            f"registry: {CYCLES} connect/disconnect cycles in {elapsed:.1f} s "
            f"({CYCLES / elapsed:.0f}/s); gateway RSS {rss_before / MiB:.1f} -> "
            f"{rss_after / MiB:.1f} MiB ({growth / CYCLES:+.0f} B per cycle)"
        )
        # A leak of a connection's state (~10 KiB) per cycle would be tens of MiB by now.
        assert growth < max(8 * MiB, CYCLES * 256)
    finally:
        await redis.aclose()
