"""Rate limits of the edge: a token bucket per connection against frame floods (pure, clock
passed in) and a per-user send limit shared by every device and gateway instance (Redis)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float = field(init=False)
    updated: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.updated = time.monotonic()

    def take(self, now: float | None = None) -> bool:
        """Spend one token if there is one."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


#: Counts one send in the current window's key and returns the count; the key outlives its
#: window by a second. One call: as a pipeline (INCR, EXPIRE) it cost the gateway about twice
#: the Python per send.
_COUNT_SEND = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], 2)
end
return count
"""


class SendLimiter:
    """At most `per_second` sends per user per second, counted in Redis (fixed window).

    If Redis is unreachable the limit fails open: sending matters more than limiting it."""

    def __init__(self, redis: aioredis.Redis, per_second: int) -> None:
        self._redis = redis
        self._limit = per_second
        self._count_send = redis.register_script(_COUNT_SEND)

    async def allow(self, user_id: uuid.UUID) -> bool:
        key = f"realchat:sends:{user_id}:{int(time.time())}"
        try:
            count = await self._count_send(keys=[key])
        except (RedisError, OSError) as exc:
            log.warning("send rate limit unavailable; allowing", error=str(exc))
            return True
        return int(count) <= self._limit
