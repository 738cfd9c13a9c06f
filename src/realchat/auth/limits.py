"""Login rate limiting: failed attempts per username and per client address, counted in Redis
so every auth service replica sees the same counts.

Fixed windows: the first failure creates `<prefix>:user:<name>` (or `:addr:<address>`) with a
TTL of the window, later failures increment it; once a key reaches the limit, logins for that
name (or from that address) are refused until the key expires - even with the right password,
or guessing could simply continue until it hits.

Redis is a guard here, not the system of record: if it is unreachable the limiter fails OPEN
(logins keep working) and logs a warning, rather than locking every user out. After a failure it
leaves Redis alone for `cooldown_s`, so an outage costs one timeout, not one per login.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

LIMITER_ERRORS = Counter(
    "realchat_auth_rate_limiter_errors_total",
    "Login rate limiter calls that failed open because Redis was unavailable",
)

DEFAULT_PREFIX = "realchat:login-fail"


class LoginLimiter:
    def __init__(
        self,
        redis: aioredis.Redis,
        attempts: int,
        window_s: int,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 0.5,
        cooldown_s: float = 5.0,
    ) -> None:
        self._redis = redis
        self._attempts = attempts
        self._window_s = window_s
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._cooldown_s = cooldown_s
        self._skip_until = 0.0

    def user_key(self, username: str) -> str:
        return f"{self._prefix}:user:{username}"

    def address_key(self, address: str) -> str:
        return f"{self._prefix}:addr:{address}"

    async def blocked_for(self, keys: list[str]) -> int | None:
        """Seconds until the first of `keys` that reached the limit expires; None if none did
        (or Redis cannot say)."""
        if self._cooling_down():
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.get(key)
                        pipe.ttl(key)
                    replies = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed_open("check", exc)
            return None
        waits = [
            max(int(ttl), 1)
            for count, ttl in zip(replies[::2], replies[1::2], strict=True)
            if count is not None and int(count) >= self._attempts
        ]
        return max(waits) if waits else None

    async def record_failure(self, keys: list[str]) -> None:
        """Count one failed login against each key, in one transaction."""
        if self._cooling_down():
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._redis.pipeline(transaction=True) as pipe:
                    for key in keys:
                        # NX: only the first failure of a window sets the TTL; INCR keeps it.
                        pipe.set(key, 0, ex=self._window_s, nx=True)
                        pipe.incr(key)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed_open("record", exc)

    async def forget(self, key: str) -> None:
        """Clear a counter (the user's, after they proved their password)."""
        if self._cooling_down():
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.delete(key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed_open("forget", exc)

    def _cooling_down(self) -> bool:
        if time.monotonic() < self._skip_until:
            LIMITER_ERRORS.inc()
            return True
        return False

    def _failed_open(self, step: str, exc: BaseException) -> None:
        LIMITER_ERRORS.inc()
        self._skip_until = time.monotonic() + self._cooldown_s
        log.warning(
            "login rate limiter unavailable; allowing logins unlimited for a while",
            step=step,
            error=repr(exc),
            retry_in_s=self._cooldown_s,
        )
