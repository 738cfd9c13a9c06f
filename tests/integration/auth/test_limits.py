"""The attempt limiter's Redis side (auth/limits.py), directly: counting is atomic against every
budget, a spent budget counts nothing more, and giving an attempt back never outlives a window."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from realchat.auth.limits import AttemptLimiter, Budget

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_spent_budget_refuses_without_counting(redis_client: aioredis.Redis) -> None:
    limiter = AttemptLimiter(redis_client, prefix=f"test:{uuid.uuid4().hex[:12]}")
    small, large = Budget(limiter.key("small"), 2, 60), Budget(limiter.key("large"), 10, 60)
    assert [await limiter.reserve([small, large], "198.51.100.1") for _ in range(3)] == [
        None,
        None,
        pytest.approx(60, abs=2),
    ]
    # The refused attempt spent nothing of the other budget either.
    assert int(await redis_client.get(large.key)) == 2
    assert 0 < await redis_client.ttl(small.key) <= 60


async def test_giving_back_after_the_window_leaves_no_counter(
    redis_client: aioredis.Redis,
) -> None:
    limiter = AttemptLimiter(redis_client, prefix=f"test:{uuid.uuid4().hex[:12]}")
    budget = Budget(limiter.key("pair"), 5, 60)
    assert await limiter.reserve([budget], None) is None
    await limiter.give_back([budget])
    assert int(await redis_client.get(budget.key)) == 0  # the attempt is given back
    await redis_client.delete(budget.key)  # as if its window had ended meanwhile
    await limiter.give_back([budget])
    assert await redis_client.exists(budget.key) == 0  # not a counter at -1 with no TTL
