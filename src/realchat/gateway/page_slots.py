"""History pages a gateway holds at once (being read, or queued to a client): a bound for the
whole gateway, and a smaller one per user.

Without the per-user share, one user with many connections (or many stalled ones: a backfill
that cannot queue keeps its slot for up to `backfill_stall_s`) could hold every slot of the
gateway and make everyone else's sync wait behind them.
"""

from __future__ import annotations

import asyncio
import uuid


class PageSlots:
    def __init__(self, total: int, per_user: int) -> None:
        if per_user < 1 or total < 1:
            raise ValueError("page slots must be at least 1")
        self._total = asyncio.Semaphore(total)
        self._per_user = per_user
        #: Semaphores of the users holding or waiting for a slot (dropped when idle).
        self._users: dict[uuid.UUID, tuple[asyncio.Semaphore, int]] = {}

    async def acquire(self, user_id: uuid.UUID) -> None:
        """Wait for one of the user's slots, then one of the gateway's."""
        mine = self._enter(user_id)
        try:
            await mine.acquire()
        except BaseException:
            self._leave(user_id)
            raise
        try:
            await self._total.acquire()
        except BaseException:
            mine.release()
            self._leave(user_id)
            raise

    def release(self, user_id: uuid.UUID) -> None:
        self._total.release()
        entry = self._users.get(user_id)
        if entry is not None:
            entry[0].release()
        self._leave(user_id)

    def users(self) -> int:
        """Users holding or waiting for a slot."""
        return len(self._users)

    def _enter(self, user_id: uuid.UUID) -> asyncio.Semaphore:
        semaphore, count = self._users.get(user_id) or (asyncio.Semaphore(self._per_user), 0)
        self._users[user_id] = (semaphore, count + 1)
        return semaphore

    def _leave(self, user_id: uuid.UUID) -> None:
        semaphore, count = self._users[user_id]
        if count <= 1:
            del self._users[user_id]
        else:
            self._users[user_id] = (semaphore, count - 1)
