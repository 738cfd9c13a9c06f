"""Redis clients: every RealChat process talks to Redis the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)


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


async def follow_channel(
    redis: aioredis.Redis,
    channel: str,
    on_message: Callable[[bytes], object],
    *,
    lost: str,
    pause_s: float,
    on_subscribed: Callable[[], Awaitable[object]] | None = None,
) -> NoReturn:
    """Hand every message published on `channel` to `on_message`, for as long as this runs.
    Redis away: log `lost`, pause `pause_s`, subscribe again. `on_subscribed` runs after every
    (re)subscription: what was published while unsubscribed was never heard."""
    while True:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(channel)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message.get("type") == "subscribe" and on_subscribed is not None:
                    await on_subscribed()
                elif message.get("type") == "message" and isinstance(message.get("data"), bytes):
                    on_message(message["data"])
        except (RedisError, OSError) as exc:
            log.warning(lost, error=str(exc))
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        await asyncio.sleep(pause_s)
