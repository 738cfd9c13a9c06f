"""Who is connected right now, in Redis: the data model gateways write and presence reads.

- `user:{user_id}:{device}` holds the id of the connection that owns the device, with a TTL that
  the gateway refreshes: a device whose gateway died disappears on its own.
- `presence:devices:{user_id}` is the set of the user's devices, so "is this user online?" is one
  small read instead of a SCAN over the keyspace. A member whose key expired is stale; readers
  prune it.
- `presence:epoch` is written once by the presence service: when it is missing, Redis lost its
  data (a restart without persistence, a flush) and the device keys are incomplete until every
  gateway has refreshed once.

A device key and its set membership always change together (MULTI or a script), set first and
deleted last, so a reader never sees a live key that the set does not list.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

#: A device id; matched whole (`fullmatch`: `$` alone would let a trailing newline through).
DEVICE_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
EPOCH_KEY = "presence:epoch"
_DEVICE_KEY = re.compile(r"^user:([0-9a-f-]{36}):([A-Za-z0-9_.-]{1,64})$")

#: Registrations, then clean disconnects, in one call (atomic, like a MULTI). A disconnect
#: deletes a device key only if this connection still owns it (the device may have reconnected
#: elsewhere since), and takes it out of the user's set first. KEYS: per
#: registration its devices set and device key, then per disconnect its device key and devices
#: set; ARGV: the TTL, the number of registrations, then per registration (device, connection),
#: per disconnect (connection, device). One round trip whose client-side cost is a few arguments
#: per device: written as a pipeline of commands, a gateway's heartbeat spent ~150 us of Python
#: per device, the largest part of its idle CPU.
_APPLY = """
local ttl = tonumber(ARGV[1])
local registrations = tonumber(ARGV[2])
local removed = 0
for i = 1, registrations do
  local set, key = KEYS[2 * i - 1], KEYS[2 * i]
  local device, connection = ARGV[2 * i + 1], ARGV[2 * i + 2]
  redis.call('SADD', set, device)
  redis.call('EXPIRE', set, ttl)
  redis.call('SET', key, connection, 'EX', ttl)
end
for i = registrations + 1, #KEYS / 2 do
  local key, set = KEYS[2 * i - 1], KEYS[2 * i]
  local connection, device = ARGV[2 * i + 1], ARGV[2 * i + 2]
  if redis.call('GET', key) == connection then
    redis.call('SREM', set, device)
    redis.call('DEL', key)
    removed = removed + 1
  end
end
return removed
"""

#: The user's devices whose key still exists; stale members are pruned on the way.
_LIVE_DEVICES = """
local live = {}
for _, device in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. device) == 1 then
    table.insert(live, device)
  else
    redis.call('SREM', KEYS[1], device)
  end
end
return live
"""


def device_key(user_id: uuid.UUID, device: str) -> str:
    return f"user:{user_id}:{device}"


def devices_key(user_id: uuid.UUID) -> str:
    return f"presence:devices:{user_id}"


def parse_device_key(key: str) -> tuple[uuid.UUID, str] | None:
    """(user id, device) of a device key; None for any other key."""
    match = _DEVICE_KEY.match(key)
    if match is None:
        return None
    try:
        return uuid.UUID(match.group(1)), match.group(2)
    except ValueError:
        return None


@dataclass(frozen=True)
class Observation:
    """One consistent look at a user: live devices, the epoch, and Redis' own clock."""

    devices: list[str]
    epoch: float | None
    now: float


@dataclass(frozen=True)
class Device:
    """One connected device: the connection that currently owns it."""

    user_id: uuid.UUID
    device: str
    connection_id: str


class PresenceRegistry:
    def __init__(self, redis: aioredis.Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._apply = redis.register_script(_APPLY)
        self._live_devices = redis.register_script(_LIVE_DEVICES)

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    async def register(self, devices: Sequence[Device]) -> None:
        """Create or refresh device keys (connect and heartbeat are the same write)."""
        await self.apply(devices, [])

    async def unregister(self, device: Device) -> bool:
        """A clean disconnect; False if another connection owns the device by now."""
        return await self.apply([], [device]) == 1

    async def apply(self, register: Sequence[Device], unregister: Sequence[Device]) -> int:
        """Registrations and clean disconnects in one round trip (one script, atomic: a reader
        never sees a device in the set without its key, or the reverse), in that order; return
        how many of the disconnects removed a device (the others had moved on)."""
        if not register and not unregister:
            return 0
        keys: list[str] = []
        args: list[str | int] = [self._ttl_s, len(register)]
        for d in register:
            keys += (devices_key(d.user_id), device_key(d.user_id, d.device))
            args += (d.device, d.connection_id)
        for d in unregister:
            keys += (device_key(d.user_id, d.device), devices_key(d.user_id))
            args += (d.connection_id, d.device)
        return int(await self._apply(keys=keys, args=args))

    async def live_devices(self, user_id: uuid.UUID) -> list[str]:
        devices = await self._live_devices(keys=[devices_key(user_id)], args=[f"user:{user_id}:"])
        return sorted(_text(d) for d in devices)

    async def is_online(self, user_id: uuid.UUID) -> bool:
        return bool(await self.live_devices(user_id))

    async def observe(self, user_id: uuid.UUID) -> Observation:
        """Live devices, epoch and time in one atomic round trip: a "no devices" seen together
        with the epoch cannot come from a Redis that restarted in between."""
        async with self._redis.pipeline(transaction=True) as pipe:
            # The script object runs in a pipeline with its SHA loaded (or its source sent).
            await self._live_devices(
                keys=[devices_key(user_id)], args=[f"user:{user_id}:"], client=pipe
            )
            pipe.get(EPOCH_KEY)
            pipe.time()
            devices, epoch, (seconds, micros) = await pipe.execute()
        return Observation(
            devices=sorted(_text(d) for d in devices),
            epoch=None if epoch is None else float(epoch),
            now=seconds + micros / 1e6,
        )

    async def scan_devices(self) -> AsyncIterator[tuple[uuid.UUID, str]]:
        """Every device key in Redis (a full SCAN: for the periodic sweep only)."""
        async for key in self._redis.scan_iter(match="user:*", count=1000):
            parsed = parse_device_key(_text(key))
            if parsed is not None:
                yield parsed

    async def mark_epoch(self) -> float:
        """Record Redis' clock as the epoch unless one is recorded; return the recorded one."""
        seconds, micros = await self._redis.time()
        await self._redis.set(EPOCH_KEY, repr(seconds + micros / 1e6), nx=True)
        recorded = await self._redis.get(EPOCH_KEY)
        return float(_text(recorded)) if recorded is not None else seconds + micros / 1e6


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
