import asyncio
import contextlib

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ResponseError

from realchat.stack.supervisor import Stack
from realchat.storage.redis import follow_channel, redis_client

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_redis_serves_keys_with_ttl_and_requires_its_password(stack: Stack) -> None:
    client = aioredis.Redis.from_url(stack.redis.url)
    try:
        await client.set("realchat:test:ttl", "1", ex=60)
        assert 0 < await client.ttl("realchat:test:ttl") <= 60
        config = await client.config_get("notify-keyspace-events")
        assert set(config["notify-keyspace-events"]) >= {"E", "x"}
    finally:
        await client.aclose()
    anonymous = aioredis.Redis(host="127.0.0.1", port=stack.redis.port)
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            await anonymous.get("realchat:test:ttl")
    finally:
        await anonymous.aclose()


async def test_a_channel_follower_hears_every_message_and_subscribes_again_when_cut_off(
    stack: Stack,
) -> None:
    channel = "realchat:test:follow"
    client = redis_client(stack.redis.url)
    received: asyncio.Queue[bytes] = asyncio.Queue()
    subscriptions: asyncio.Queue[None] = asyncio.Queue()

    async def on_subscribed() -> None:
        subscriptions.put_nowait(None)

    follower = asyncio.create_task(
        follow_channel(
            client,
            channel,
            received.put_nowait,
            lost="test channel lost",
            pause_s=0.05,
            on_subscribed=on_subscribed,
        )
    )
    try:
        await asyncio.wait_for(subscriptions.get(), timeout=10)
        await client.publish(channel, b"one")
        assert await asyncio.wait_for(received.get(), timeout=10) == b"one"
        assert await client.client_kill_filter(_type="pubsub") >= 1
        await asyncio.wait_for(subscriptions.get(), timeout=10)  # on its own, after the cut
        await client.publish(channel, b"two")
        assert await asyncio.wait_for(received.get(), timeout=10) == b"two"
        assert received.empty()
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await client.aclose()
