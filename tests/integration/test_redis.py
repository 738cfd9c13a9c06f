import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ResponseError

from realchat.stack.supervisor import Stack

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
