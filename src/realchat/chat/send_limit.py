"""The per-user send limit on every path into the chat service.

The gateway limits its users' sends (`gateway/ratelimit.py`, counted in Redis per user) before
it calls the chat service with the internal credential. A user may also call the chat service
with their own access token; those sends are counted here, against the same per-user budget, so
going around the gateway buys nothing.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from typing import Protocol

from realchat.chat.errors import RateLimited
from realchat.chat.rpc import AUTHORIZATION


class Limiter(Protocol):
    async def allow(self, user_id: uuid.UUID) -> bool: ...


class DirectSendLimit:
    """Refuses a send (`rate_limited`) of a caller that did not come through the gateway (no
    internal credential) once the user's budget is spent."""

    def __init__(self, limiter: Limiter, internal_token: str) -> None:
        self._limiter = limiter
        self._internal = f"Bearer {internal_token}".encode()

    def counts(self, metadata: Mapping[str, str]) -> bool:
        """Whether this call's sends are counted here (the gateway counted the others)."""
        presented = metadata.get(AUTHORIZATION, "").encode()
        return not hmac.compare_digest(presented, self._internal)

    async def check(self, caller: uuid.UUID) -> None:
        if not await self._limiter.allow(caller):
            raise RateLimited()
