"""The access token a client presents, renewed before it expires and when it is refused.

The gateway checks the token when a WebSocket is opened and closes the connection (4001) when
the token expires or is revoked (a logout, a password change): the connection then reconnects
with a renewed token, as a reconnect after a gateway restart does. `TokenSource` hands out the
current token and asks its provider for a new one:

- proactively, when the token is about to expire (a tenth of its lifetime before, at most a
  minute), if the provider said how long it lives;
- once after a refusal (WebSocket close 4001, HTTP 401), before the refusal is taken as final.

Without a provider the token is fixed: a refusal is final.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from realchat.client.rest import RestApi, Token

#: Returns a fresh access token: a `Token` (with `expires_in`) or a bare token string (its
#: lifetime unknown: renewed only when refused). `Unauthorized` from it is final.
TokenProvider = Callable[[], Awaitable[Token | str]]

#: Renew this long before expiry at most (and at least a tenth of the lifetime before).
RENEW_AHEAD_MAX_S = 60.0


def credentials_provider(rest: RestApi, username: str, password: str) -> TokenProvider:
    """A provider that logs in again (`POST /v1/tokens`) with credentials kept in memory."""

    async def provide() -> Token:
        return await rest.token(username, password)

    return provide


class TokenSource:
    def __init__(
        self,
        token: str | None,
        provider: TokenProvider | None = None,
        *,
        expires_in: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if token is None and provider is None:
            raise ValueError("need a token or a token provider")
        self._token = token
        self._provider = provider
        self._clock = clock
        self._renew_at = self._renewal_time(expires_in)
        self._lock = asyncio.Lock()
        #: Tokens obtained from the provider so far.
        self.renewals = 0

    @property
    def token(self) -> str | None:
        """The token as it is now (possibly expired); `current()` renews it first if due."""
        return self._token

    @property
    def renewable(self) -> bool:
        return self._provider is not None

    def use_provider(self, provider: TokenProvider) -> None:
        """Renew from now on with `provider` (e.g. the same account's new password)."""
        self._provider = provider

    async def current(self) -> str:
        """The token to present now: renewed first if there is none or it is about to expire."""
        async with self._lock:
            if self._token is None or (
                self._renew_at is not None and self._clock() >= self._renew_at
            ):
                await self._renew()
            assert self._token is not None
            return self._token

    async def renew_after_refusal(self, refused: str) -> bool:
        """The server refused `refused`: get another token. False if there is no provider (the
        refusal is final). A token renewed meanwhile by someone else counts as renewed."""
        if self._provider is None:
            return False
        async with self._lock:
            if self._token == refused:
                self._renew_at = -math.inf  # due until a renewal succeeds
                await self._renew()
        return True

    async def _renew(self) -> None:
        assert self._provider is not None
        fresh = await self._provider()
        if isinstance(fresh, Token):
            self._token, self._renew_at = fresh.access_token, self._renewal_time(fresh.expires_in)
        else:
            self._token, self._renew_at = fresh, None
        self.renewals += 1

    def _renewal_time(self, expires_in: float | None) -> float | None:
        if expires_in is None:
            return None
        return self._clock() + expires_in - min(RENEW_AHEAD_MAX_S, expires_in / 10)
