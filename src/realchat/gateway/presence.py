"""The gateway's half of presence: keep a device key alive in Redis for each local connection.

A key is written on connect, refreshed every heartbeat and deleted on a clean disconnect; if the
gateway dies the keys expire by themselves (the presence service turns that into offline).

One writer task owns every Redis write, so a disconnect can never be overtaken by a heartbeat
still carrying its connection. Sessions only record what they want (register me, delete me) and
wake the writer, which sends everything pending in one transaction: the work waiting is bounded
by the connections that changed since the last write, however fast they churn, and a session
that came and went before the writer ran costs Redis nothing. Redis being away never touches a
session: the write fails, is logged, and is retried every second with everything still wanted
(a full refresh after a failed heartbeat), so presence is back within a second of Redis
returning, however empty it came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import structlog
from redis.exceptions import RedisError

from realchat.gateway import metrics
from realchat.presence.registry import Device, PresenceRegistry

log = structlog.get_logger(__name__)

#: Writes per Redis transaction (a MULTI holds Redis for its whole length).
CHUNK = 500
#: Pause between attempts while Redis is away.
RETRY_S = 1.0


class PresenceHeartbeat:
    def __init__(self, registry: PresenceRegistry, heartbeat_s: float) -> None:
        self._registry = registry
        self._heartbeat_s = heartbeat_s
        #: Local devices by connection (session) id: what every heartbeat rewrites.
        self._devices: dict[uuid.UUID, Device] = {}
        #: Written at the next flush: new connections, and departed ones (already written).
        self._to_register: dict[uuid.UUID, Device] = {}
        self._to_unregister: dict[uuid.UUID, Device] = {}
        self._wake = asyncio.Event()
        self._failed = False

    def __len__(self) -> int:
        return len(self._devices)

    @property
    def pending(self) -> int:
        return len(self._to_register) + len(self._to_unregister)

    def connected(self, session_id: uuid.UUID, user_id: uuid.UUID, device: str) -> None:
        entry = Device(user_id, device, str(session_id))
        self._devices[session_id] = entry
        self._to_register[session_id] = entry
        self._changed()

    def disconnected(self, session_id: uuid.UUID) -> None:
        entry = self._devices.pop(session_id, None)
        if entry is None:
            return
        if self._to_register.pop(session_id, None) is None:
            self._to_unregister[session_id] = entry  # written before: delete it
        self._changed()

    async def run(self, stop: asyncio.Event) -> None:
        """Write what changed as soon as it changes; refresh everything every heartbeat."""
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self._heartbeat_s
        stopping = asyncio.create_task(self._wake_on(stop))
        while not stop.is_set():
            timeout = RETRY_S if self._failed else max(0.0, next_refresh - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            self._wake.clear()
            refresh = loop.time() >= next_refresh or self._failed
            if refresh:
                next_refresh = loop.time() + self._heartbeat_s
            await self.flush(refresh=refresh)
        await stopping
        await self.flush(refresh=False)  # the drained clients' disconnects reach Redis

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def flush(self, *, refresh: bool) -> bool:
        """Send what is pending (with `refresh`, every local device); False if Redis failed."""
        register = dict(self._devices) if refresh else self._to_register
        unregister = self._to_unregister
        self._to_register, self._to_unregister = {}, {}
        try:
            await self._write(list(register.values()), list(unregister.values()))
        except (RedisError, OSError) as exc:
            metrics.PRESENCE_WRITE_FAILURES.inc()
            log.warning("presence write failed; retrying", error=str(exc))
            self._failed = True
            # Still wanted: the departed, and the devices still here (refreshed in full).
            self._to_unregister = {**unregister, **self._to_unregister}
            return False
        self._failed = False
        return True

    async def _write(self, register: list[Device], unregister: list[Device]) -> None:
        for start in range(0, max(len(register), len(unregister)), CHUNK):
            await self._registry.apply(
                register[start : start + CHUNK], unregister[start : start + CHUNK]
            )

    def _changed(self) -> None:
        self._wake.set()
