"""Revoked access tokens: each user's current token version, told to every verifier.

PostgreSQL's `users.token_version` is the record: the auth service signs each token with the
version current then (claim `ver`) and bumps it on logout and on a password change, which revokes
every older token of the user. A verifier refuses a token whose `ver` is below the current one.

The chat service reads the record itself (`chat/identity.py`). The gateways have no database:
the auth service mirrors each bump to Redis (a key per user, read when a session opens or a
request comes) and publishes it on a channel the gateways follow, so a revoked token's open
WebSocket is closed at once (`gateway/sessions.py`). A key lives for the longest token lifetime
there can be: once it is gone, every token it refused has expired anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as aioredis
import structlog

from realchat.config import MAX_TOKEN_TTL_S
from realchat.storage.redis import follow_channel

log = structlog.get_logger(__name__)

CHANNEL = "realchat:token-revocations"
#: Longer than any token lives (plus the verifiers' clock leeway).
KEEP_S = MAX_TOKEN_TTL_S + 120
#: Pause before following the channel again after Redis went away.
RESUBSCRIBE_PAUSE_S = 0.5

#: Raises the stored version (never lowers it: two revocations may land out of order) and
#: publishes it, in one step.
_RAISE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    current = wanted
end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. current)
return current
"""


def version_key(user_id: uuid.UUID) -> str:
    return f"realchat:token-version:{user_id}"


def parse_announcement(data: bytes | str) -> tuple[uuid.UUID, int] | None:
    """`<user id> <version>` as published; None for anything else."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    user, _, version = text.partition(" ")
    try:
        return uuid.UUID(user), int(version)
    except ValueError:
        return None


class TokenVersions:
    """The Redis mirror of the users' token versions."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def announce(self, user_id: uuid.UUID, version: int) -> None:
        """Make `version` the user's current one everywhere (raises if Redis is away: the
        caller reports the revocation as failed, and it may be tried again)."""
        await self._redis.eval(
            _RAISE, 1, version_key(user_id), version, KEEP_S, CHANNEL, str(user_id)
        )

    async def current(self, user_ids: Sequence[uuid.UUID]) -> list[int]:
        """Each user's current version (0: never revoked, or long enough ago)."""
        if not user_ids:
            return []
        values = await self._redis.mget([version_key(u) for u in user_ids])
        return [int(v) if v is not None else 0 for v in values]

    async def follow(
        self,
        on_bump: Callable[[uuid.UUID, int], None],
        on_subscribed: Callable[[], Awaitable[None]],
    ) -> None:
        """Call `on_bump` for every announced version, forever. After every (re)subscription
        `on_subscribed` runs: what was announced while unsubscribed was never heard."""

        def on_message(data: bytes) -> None:
            parsed = parse_announcement(data)
            if parsed is not None:
                on_bump(*parsed)

        await follow_channel(
            self._redis,
            CHANNEL,
            on_message,
            lost="token revocations lost; resubscribing",
            pause_s=RESUBSCRIBE_PAUSE_S,
            on_subscribed=on_subscribed,
        )
