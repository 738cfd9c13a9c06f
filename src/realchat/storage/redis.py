"""Redis clients: every RealChat process talks to Redis the same way."""

from __future__ import annotations

import redis.asyncio as aioredis


def redis_client(url: str) -> aioredis.Redis:
    """Redis with timeouts: a hung Redis fails a call instead of stalling the caller (a send
    waiting on the rate limiter, a heartbeat holding the presence lock)."""
    return aioredis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=10
    )
