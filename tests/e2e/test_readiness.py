"""Readiness tells the truth about dependencies, on a throw-away stack: the chat service is not
ready while PostgreSQL is down and is again once it is back; a gateway is not ready while its
Kafka consumer has lost its partitions (the brokers went away) and is again once reassigned.
Liveness (/healthz) stays up throughout: restarting a process would not bring a database back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from realchat.stack.supervisor import Stack
from tests.support.stacks import throwaway_settings
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    created = Stack(throwaway_settings(tmp_path / "stack"), report=print)
    try:
        await created.up()
        yield created
    finally:
        await created.down()


async def status(http: aiohttp.ClientSession, url: str) -> int:
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=3)) as reply:
            return reply.status
    except (aiohttp.ClientError, TimeoutError):
        return -1


async def becomes(http: aiohttp.ClientSession, url: str, wanted: int, timeout_s: float) -> float:
    """Seconds until `url` answers `wanted`; fails the test if it never does."""
    started = time.monotonic()
    seen = await eventually_async(lambda: status(http, url), lambda s: s == wanted, timeout_s)
    assert seen == wanted, f"{url} answered {seen}, expected {wanted}"
    return time.monotonic() - started


async def test_readiness_follows_postgres_and_the_kafka_assignment(stack: Stack) -> None:
    app = stack.app_settings
    chat = f"http://127.0.0.1:{app.chat.ops_port}"
    gateway = f"http://127.0.0.1:{app.gateway.ops_port}"
    async with aiohttp.ClientSession() as http:
        assert await status(http, f"{chat}/readyz") == 200
        assert await status(http, f"{gateway}/readyz") == 200

        await stack.kill_component("postgres")
        down = await becomes(http, f"{chat}/readyz", 503, timeout_s=30)
        assert await status(http, f"{chat}/healthz") == 200
        await stack.start_component("postgres")
        up = await becomes(http, f"{chat}/readyz", 200, timeout_s=60)
        print(
            f"readiness: chat not ready {down:.1f} s after PostgreSQL died, "
            f"ready {up:.1f} s after it was back"
        )

        await stack.kill_component("kafka")
        # The group session (10 s) has to run out before the consumer counts its partitions lost.
        lost = await becomes(http, f"{gateway}/readyz", 503, timeout_s=90)
        assert await status(http, f"{gateway}/healthz") == 200
        await stack.start_component("kafka")
        back = await becomes(http, f"{gateway}/readyz", 200, timeout_s=120)
        print(
            f"readiness: gateway not ready {lost:.1f} s after Kafka died, "
            f"ready {back:.1f} s after it was back"
        )
