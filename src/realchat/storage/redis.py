"""Redis clients: every RealChat process talks to Redis the same way."""

from __future__ import annotations

import redis.asyncio as aioredis


def redis_client(
    url: str, *, timeout_s: float = 5.0, connect_timeout_s: float = 2.0
) -> aioredis.Redis:
    """Redis with timeouts: a hung Redis fails a call instead of stalling the caller (a send
    waiting on the rate limiter, a heartbeat holding the presence lock, a login)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=connect_timeout_s,
        health_check_interval=10,
    )
