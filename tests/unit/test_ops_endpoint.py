"""Every process's ops endpoint: metrics, liveness and readiness, and the asyncio task count
that the load test samples to spot leaks."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from realchat.observability.ops import start_ops_server
from tests.support.ports import free_port_block

pytestmark = pytest.mark.asyncio


async def task_count(http: aiohttp.ClientSession, url: str) -> float:
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        if family.name == "realchat_asyncio_tasks":
            return family.samples[0].value
    raise AssertionError("no realchat_asyncio_tasks")


async def test_the_task_count_follows_the_event_loop_and_readiness_its_check() -> None:
    ready = False

    async def check() -> bool:
        return ready

    port = free_port_block(offsets=(0,))
    runner = await start_ops_server("127.0.0.1", port, check)
    url = f"http://127.0.0.1:{port}"
    sleepers: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as http:
            before = await task_count(http, url)
            sleepers = [asyncio.create_task(asyncio.sleep(60)) for _ in range(50)]
            assert await task_count(http, url) >= before + 50
            for sleeper in sleepers:
                sleeper.cancel()
            await asyncio.gather(*sleepers, return_exceptions=True)
            assert await task_count(http, url) < before + 50

            async with http.get(f"{url}/readyz") as response:
                assert response.status == 503
            ready = True
            async with http.get(f"{url}/readyz") as response:
                assert response.status == 200
            async with http.get(f"{url}/healthz") as response:
                assert response.status == 200
    finally:
        await runner.cleanup()
