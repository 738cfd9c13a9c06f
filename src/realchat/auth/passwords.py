"""Password hashing with argon2id, kept off the event loop.

argon2id is deliberately slow and memory-hard (the defaults are RFC 9106's low-memory profile:
t=3, 64 MiB, p=4, ~50 ms), so it runs in worker threads, and at most `max_concurrency` at once:
a burst of logins then queues instead of allocating 64 MiB per request until the process dies.
"""

from __future__ import annotations

import asyncio
import os
import secrets

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = structlog.get_logger(__name__)


class Passwords:
    """Hash and verify passwords; `verify(None, ...)` costs as much as a real check."""

    def __init__(self, hasher: PasswordHasher | None = None, max_concurrency: int = 0) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(max_concurrency or os.cpu_count() or 4)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """True if `password` matches `stored`. `stored` None means "no such user": the password
        is then checked against a dummy hash with the same parameters, so the answer takes as
        long as for a real user and its timing does not reveal which usernames exist."""
        target = stored if stored is not None else await self._dummy_hash()
        async with self._slots:
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
