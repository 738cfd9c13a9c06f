"""The gateway's half of presence: keep a device key alive in Redis for each local connection.

A key is written on connect, refreshed every heartbeat and deleted on a clean disconnect; if the
gateway dies the keys expire by themselves (the presence service turns that into offline).

Every Redis write goes through one lock, in order: a disconnect can never be overtaken by a
heartbeat still carrying its connection (which would keep a departed device online for a TTL).
Redis being away never touches a session: writes fail, are logged, and the next heartbeat,
retried every second until it succeeds, rewrites every key (so presence is back within a second
of Redis returning, however empty it came back).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

import structlog
from redis.exceptions import RedisError

from realchat.gateway import metrics
from realchat.presence.registry import Device, PresenceRegistry

log = structlog.get_logger(__name__)

#: Keys refreshed per Redis transaction (a MULTI holds Redis for its whole length).
REFRESH_CHUNK = 500
#: Pause between attempts while Redis is away.
RETRY_S = 1.0


class PresenceHeartbeat:
    def __init__(self, registry: PresenceRegistry, heartbeat_s: float) -> None:
        self._registry = registry
        self._heartbeat_s = heartbeat_s
        #: Local devices by connection (session) id: what every heartbeat rewrites.
        self._devices: dict[uuid.UUID, Device] = {}
        self._lock = asyncio.Lock()
        self._failed = asyncio.Event()
        self._tasks: set[asyncio.Task[bool]] = set()

    def __len__(self) -> int:
        return len(self._devices)

    def connected(self, session_id: uuid.UUID, user_id: uuid.UUID, device: str) -> None:
        entry = Device(user_id, device, str(session_id))
        self._devices[session_id] = entry
        self._spawn(self._write(lambda: self._registry.register([entry])))

    def disconnected(self, session_id: uuid.UUID) -> None:
        entry = self._devices.pop(session_id, None)
        if entry is not None:
            self._spawn(self._write(lambda: self._registry.unregister(entry)))

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every local key each heartbeat; after a failure, every second until it works."""
        while not stop.is_set():
            delay = RETRY_S if self._failed.is_set() else self._heartbeat_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            if stop.is_set():
                break
            self._failed.clear()
            await self.refresh()

    async def refresh(self) -> None:
        devices = list(self._devices.values())
        for start in range(0, len(devices), REFRESH_CHUNK):
            chunk = devices[start : start + REFRESH_CHUNK]
            if not await self._write(partial(self._register_local, chunk)):
                return

    async def close(self) -> None:
        """Wait for the writes in flight (the disconnects of a drain among them)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _register_local(self, devices: list[Device]) -> None:
        # Filtered under the lock: a device that left meanwhile is not written back.
        await self._registry.register(
            [d for d in devices if self._devices.get(uuid.UUID(d.connection_id)) is d]
        )

    async def _write(self, operation: Callable[[], Awaitable[object]]) -> bool:
        async with self._lock:
            try:
                await operation()
            except (RedisError, OSError) as exc:
                metrics.PRESENCE_WRITE_FAILURES.inc()
                log.warning("presence write failed; retrying", error=str(exc))
                self._failed.set()
                return False
        return True

    def _spawn(self, coro: Coroutine[Any, Any, bool]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
