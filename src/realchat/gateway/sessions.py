"""Whose tokens still hold: the gateway's check of access tokens, at the door and after it.

A token is checked when a request comes or a WebSocket opens (signature, lifetime, and that its
version is the user's current one: `auth/revocation.py`), and then for as long as the WebSocket
lives: the connection is closed with 4001 the moment its token is revoked (announced on Redis's
channel) and within a sweep interval of its expiry. The client renews its token and reconnects.

Redis away fails open (a token whose signature and lifetime hold is accepted), like the send
limit: the bus and the database keep working without Redis, and so should sessions. Every
resubscription re-checks every open session, so a revocation announced while the channel was
lost closes its sessions once it is back.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import uuid
from collections.abc import Callable

import structlog
from redis.exceptions import RedisError

from realchat.auth.revocation import TokenVersions
from realchat.auth.tokens import InvalidToken, TokenClaims, TokenVerifier
from realchat.contract.close_codes import CloseCode
from realchat.gateway.connection import Connection

log = structlog.get_logger(__name__)

#: How often expired sessions are looked for: a token's WebSocket outlives it by at most this.
SWEEP_S = 0.25
#: Users re-checked per Redis round trip after a resubscription.
RECHECK_CHUNK = 500
#: Entries of closed sessions the expiry heap may hold beyond twice the open ones.
COMPACT_SLACK = 1024


class SessionGuard:
    def __init__(
        self,
        verifier: TokenVerifier,
        versions: TokenVersions,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = verifier
        self._versions = versions
        self._clock = clock
        #: Open sessions by user, with what their token said.
        self._sessions: dict[uuid.UUID, dict[Connection, TokenClaims]] = {}
        #: (expiry, tie-breaker, connection): the next session to expire on top.
        self._expiries: list[tuple[float, int, Connection]] = []
        self._order = itertools.count()
        #: Sessions tracked now.
        self._tracked = 0

    async def admit(self, token: str) -> TokenClaims:
        """What the token says if it may be used now; raise `InvalidToken` otherwise."""
        claims = self._verifier.claims(token)
        try:
            (current,) = await self._versions.current([claims.user_id])
        except (RedisError, OSError) as exc:
            log.warning("token versions unavailable; accepting", error=str(exc))
            return claims
        if claims.version < current:
            raise InvalidToken("revoked", "token was revoked (logout or password change)")
        return claims

    def track(self, connection: Connection, claims: TokenClaims) -> None:
        """Watch the session until `untrack`: it is closed when its token expires or is
        revoked."""
        sessions = self._sessions.setdefault(claims.user_id, {})
        self._tracked += connection not in sessions
        sessions[connection] = claims
        heapq.heappush(self._expiries, (claims.expires_at, next(self._order), connection))

    def untrack(self, connection: Connection) -> None:
        sessions = self._sessions.get(connection.user_id)
        if sessions is None:
            return
        if sessions.pop(connection, None) is not None:
            self._tracked -= 1
        if not sessions:
            del self._sessions[connection.user_id]
        # Its expiry entry stays in the heap until due (then it is found untracked), unless the
        # heap is mostly such entries: then it is rebuilt, so churn cannot keep closed
        # connections alive in it for a token's lifetime.
        if len(self._expiries) > 2 * self._tracked + COMPACT_SLACK:
            self._compact()

    def __len__(self) -> int:
        return self._tracked

    @property
    def expiry_entries(self) -> int:
        """Entries of the expiry heap (closed sessions' included until due or compacted)."""
        return len(self._expiries)

    def _compact(self) -> None:
        self._expiries = [
            (claims.expires_at, next(self._order), connection)
            for sessions in self._sessions.values()
            for connection, claims in sessions.items()
        ]
        heapq.heapify(self._expiries)

    def revoked(self, user_id: uuid.UUID, version: int) -> int:
        """The user's tokens below `version` no longer hold: close their sessions; how many."""
        sessions = self._sessions.get(user_id)
        if not sessions:
            return 0
        ended = [c for c, claims in sessions.items() if claims.version < version]
        for connection in ended:
            self._end(connection, "token revoked")
        return len(ended)

    def expire(self, now: float | None = None) -> int:
        """Close the sessions whose token expired; how many."""
        now = self._clock() if now is None else now
        ended = 0
        while self._expiries and self._expiries[0][0] <= now:
            _, _, connection = heapq.heappop(self._expiries)
            if connection in self._sessions.get(connection.user_id, {}):
                self._end(connection, "token expired")
                ended += 1
        return ended

    async def recheck(self) -> None:
        """Compare every open session with the current versions (after a gap in the channel)."""
        users = list(self._sessions)
        for start in range(0, len(users), RECHECK_CHUNK):
            chunk = users[start : start + RECHECK_CHUNK]
            for user_id, version in zip(chunk, await self._versions.current(chunk), strict=True):
                self.revoked(user_id, version)

    async def run(self) -> None:
        """Follow revocations and close expired sessions, until cancelled."""
        follower = asyncio.create_task(self._versions.follow(self._on_bump, self.recheck))
        try:
            while True:
                await asyncio.sleep(SWEEP_S)
                self.expire()
        finally:
            follower.cancel()

    def _on_bump(self, user_id: uuid.UUID, version: int) -> None:
        self.revoked(user_id, version)

    def _end(self, connection: Connection, reason: str) -> None:
        self.untrack(connection)
        if connection.is_open:
            log.info("session closed", user_id=str(connection.user_id), reason=reason)
            connection.close(CloseCode.UNAUTHORIZED, reason)
