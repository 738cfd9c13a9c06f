"""Readiness tells the truth about dependencies, on a throw-away stack: the chat service is not
ready while PostgreSQL is down and is again once it is back. Liveness (/healthz) stays up
throughout: restarting a process would not bring a database back.

The bus is different: the outbox exists so that writes never depend on it. While Kafka is down
the gateway stays ready, sends are stored, and its clients are told that live delivery paused:
the SDK then syncs by itself and still gets every message; live delivery resumes when the bus is
back, with nothing lost, reordered or doubled."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
import pytest_asyncio

from realchat.client import ClientOptions, LiveDelivery, RealChatClient
from realchat.loadtest.sampler import parse_metrics
from realchat.stack.supervisor import Stack
from tests.support.client import PASSWORD
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


async def test_readiness_follows_postgres(stack: Stack) -> None:
    app = stack.app_settings
    chat = f"http://127.0.0.1:{app.chat.ops_port}"
    base = f"http://127.0.0.1:{app.http.port}"
    username = await new_user(base, "carol")
    async with aiohttp.ClientSession() as http:
        assert await status(http, f"{chat}/readyz") == 200
        credentials = {"username": username, "password": PASSWORD}
        async with http.post(f"{base}/v1/tokens", json=credentials) as reply:
            bearer = {"Authorization": f"Bearer {(await reply.json())['access_token']}"}
        async with http.post(
            f"{base}/v1/conversations", json={"member_ids": []}, headers=bearer
        ) as reply:
            conversation = (await reply.json())["conversation_id"]

        await stack.kill_component("postgres")
        down = await becomes(http, f"{chat}/readyz", 503, timeout_s=30)
        assert await status(http, f"{chat}/healthz") == 200
        # A send fails at once, saying when to try again, and nothing else breaks.
        async with http.post(
            f"{base}/v1/conversations/{conversation}/messages",
            json={"client_msg_id": "while-postgres-is-down", "content": "hello?"},
            headers=bearer,
        ) as refused:
            assert refused.status == 503
            assert refused.headers["Retry-After"] == "1"
            assert (await refused.json())["error"]["code"] == "chat_unavailable"
        await stack.start_component("postgres")
        up = await becomes(http, f"{chat}/readyz", 200, timeout_s=60)
        print(
            f"readiness: chat not ready {down:.1f} s after PostgreSQL died, "
            f"ready {up:.1f} s after it was back"
        )


async def test_with_the_bus_down_the_api_stays_up_and_messages_still_arrive(
    stack: Stack,
) -> None:
    base = f"http://127.0.0.1:{stack.app_settings.http.port}"
    ops = f"http://127.0.0.1:{stack.app_settings.gateway.ops_port}"
    options = ClientOptions(reconnect_initial_s=0.2, reconnect_max_s=2.0, paused_sync_s=0.5)
    alice = await new_client(base, "alice", options)
    bob = await new_client(base, "bob", options)
    readiness: list[int] = []
    async with alice, bob, aiohttp.ClientSession() as http:
        await asyncio.gather(alice.wait_ready(60), bob.wait_ready(60))
        assert bob.user_id is not None
        conversation = (await alice.create_conversation([bob.user_id], "bus")).conversation_id
        sent = [await alice.send(conversation, "before the outage")]

        await stack.kill_component("kafka")
        # The group session (10 s) has to run out before the consumer counts its partitions lost.
        paused = await next_event(bob.events(), LiveDelivery, timeout_s=90)
        assert paused.paused
        assert await metric(http, ops, "realchat_gateway_live_delivery_paused") == 1
        for n in range(10):
            sent.append(await alice.send(conversation, f"during the outage {n}"))
            readiness.append(await status(http, f"{ops}/readyz"))
        during = await take(bob.messages(), len(sent), timeout_s=30)  # by the SDK's syncs
        assert during == sent

        await stack.start_component("kafka")
        resumed = await next_event(bob.events(), LiveDelivery, timeout_s=120)
        assert not resumed.paused
        assert await metric(http, ops, "realchat_gateway_live_delivery_paused") == 0
        after = [await alice.send(conversation, f"after the outage {n}") for n in range(5)]
        assert await take(bob.messages(), len(after), timeout_s=30) == after
        assert [m.seq for m in during + after] == list(range(1, len(sent) + len(after) + 1))
    # The balancer never took the gateway out: the API was up all along.
    assert readiness == [200] * 10
    assert bob.paused_syncs > 0


T = TypeVar("T")


async def next_event(stream: AsyncIterator[object], kind: type[T], timeout_s: float) -> T:
    async with asyncio.timeout(timeout_s):
        while not isinstance(item := await anext(stream), kind):
            pass
        return item


async def take(stream: AsyncIterator[T], n: int, timeout_s: float) -> list[T]:
    async with asyncio.timeout(timeout_s):
        return [await anext(stream) for _ in range(n)]


async def metric(http: aiohttp.ClientSession, ops: str, name: str) -> float | None:
    async with http.get(f"{ops}/metrics") as reply:
        return parse_metrics(await reply.text()).get(name)


async def new_user(base: str, name: str) -> str:
    username = f"{name}_{uuid.uuid4().hex[:10]}"
    await RealChatClient.register(base, username, PASSWORD)
    return username


async def new_client(base: str, name: str, options: ClientOptions) -> RealChatClient:
    return await RealChatClient.login(base, await new_user(base, name), PASSWORD, options=options)
