"""Password hashing with argon2id, kept off the event loop.

argon2id is deliberately slow and memory-hard (the defaults are RFC 9106's low-memory profile:
t=3, 64 MiB, p=4, ~50 ms), so it runs in worker threads, and at most `max_concurrency` at once:
a burst of logins then queues instead of allocating 64 MiB per request until the process dies.
The queue is bounded too (`max_waiting`, running ones included): past it a caller gets
`HashingBusy` at once (the API answers 503 with Retry-After) instead of a wait that grows without
bound. Sign-ups are background work: they may fill only half of the queue, and a waiting login
goes before every waiting sign-up, so a flood of sign-ups delays a login by at most the hashes
already running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections import deque
from collections.abc import AsyncIterator

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = structlog.get_logger(__name__)


class HashingBusy(Exception):  # noqa: N818 - a state, not a failure of the caller
    """The hashing queue holds as many as this caller's share allows: try again shortly."""


class PriorityGate:
    """At most `slots` holders at once; waiting foreground callers go before background ones."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (
            deque(),
            deque(),
        )

    async def acquire(self, background: bool) -> None:
        if self._free > 0:
            self._free -= 1
            return
        granted = asyncio.get_running_loop().create_future()
        queue = self._waiting[background]
        queue.append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # handed a slot just as it was cancelled: pass it on
            else:
                queue.remove(granted)
            raise

    def release(self) -> None:
        for queue in self._waiting:
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1


class Passwords:
    """Hash and verify passwords; `verify(None, ...)` costs as much as a real check."""

    def __init__(
        self,
        hasher: PasswordHasher | None = None,
        max_concurrency: int = 0,
        max_waiting: int = 64,
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = PriorityGate(max_concurrency or os.cpu_count() or 4)
        self._max_waiting = max_waiting
        self._waiting = 0
        self._dummy: str | None = None

    async def hash(self, password: str, *, background: bool = False) -> str:
        """`background`: a sign-up's hash, which yields to logins (see the module's text)."""
        async with self._slot(background):
            return await asyncio.to_thread(self._hasher.hash, password)

    @contextlib.asynccontextmanager
    async def _slot(self, background: bool) -> AsyncIterator[None]:
        if self._waiting >= (self._max_waiting // 2 if background else self._max_waiting):
            raise HashingBusy()
        self._waiting += 1
        try:
            await self._slots.acquire(background)
            try:
                yield
            finally:
                self._slots.release()
        finally:
            self._waiting -= 1

    async def verify(self, stored: str | None, password: str) -> bool:
        """True if `password` matches `stored`. `stored` None means "no such user": the password
        is then checked against a dummy hash with the same parameters, so the answer takes as
        long as for a real user and its timing does not reveal which usernames exist."""
        target = stored if stored is not None else await self._dummy_hash()
        async with self._slot(background=False):
            matches = await asyncio.to_thread(self._check, target, password)
        return matches and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        """Whether `stored` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return False

    def _check(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError) as exc:
            log.error("stored password hash cannot be verified", error=repr(exc))
            return False

    async def _dummy_hash(self) -> str:
        """Made on first use (not at import or start-up), from a password nobody knows."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(32))
        return self._dummy
