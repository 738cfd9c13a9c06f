"""A user's push devices and notification settings (migration 0004): the SQL behind
`/v1/devices` and `/v1/notification-settings`, served by the auth service."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class Device:
    device_id: uuid.UUID
    platform: str
    token: str
    created_at: datetime


@dataclass(frozen=True)
class NotificationSettings:
    do_not_disturb: bool
    muted_conversation_ids: list[uuid.UUID]


class TooManyDevices(Exception):  # noqa: N818
    pass


def _device(row: asyncpg.Record) -> Device:
    return Device(row["id"], row["platform"], row["token"], row["created_at"])


class PreferencesStore:
    def __init__(self, pool: asyncpg.Pool, max_devices: int) -> None:
        self._pool = pool
        self._max_devices = max_devices

    async def register(self, user_id: uuid.UUID, platform: str, token: str) -> tuple[Device, bool]:
        """The device holding this token, now the user's; True if it was not the user's before.

        A token identifies one app install: registered again by another account (someone else
        logged in on the phone), it moves to that account and the previous one stops getting
        pushes on it."""
        async with self._pool.acquire() as conn, conn.transaction():
            # One user's registrations one at a time, so the cap holds under concurrency.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1::text))", str(user_id))
            existing = await conn.fetchrow(
                "SELECT id, user_id, platform, token, created_at FROM push_devices "
                "WHERE platform = $1 AND token = $2 FOR UPDATE",
                platform,
                token,
            )
            if existing is not None and existing["user_id"] == user_id:
                return _device(existing), False
            count = await conn.fetchval(
                "SELECT count(*) FROM push_devices WHERE user_id = $1", user_id
            )
            if count >= self._max_devices:
                raise TooManyDevices
            row = await conn.fetchrow(
                """INSERT INTO push_devices (id, user_id, platform, token) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (platform, token) DO UPDATE
                      SET user_id = excluded.user_id, id = excluded.id, created_at = now()
                   RETURNING id, platform, token, created_at""",
                uuid.uuid4(),
                user_id,
                platform,
                token,
            )
            assert row is not None
            return _device(row), True

    async def devices(self, user_id: uuid.UUID) -> list[Device]:
        rows = await self._pool.fetch(
            "SELECT id, platform, token, created_at FROM push_devices WHERE user_id = $1 "
            "ORDER BY created_at, id",
            user_id,
        )
        return [_device(r) for r in rows]

    async def unregister(self, user_id: uuid.UUID, device_id: uuid.UUID) -> bool:
        """False if the user has no such device (someone else's is not theirs to remove)."""
        deleted = await self._pool.fetchval(
            "DELETE FROM push_devices WHERE id = $1 AND user_id = $2 RETURNING id",
            device_id,
            user_id,
        )
        return deleted is not None

    async def unregister_all(self, user_id: uuid.UUID) -> int:
        """Every push token of the user: what logging out of all sessions must call."""
        result = await self._pool.execute("DELETE FROM push_devices WHERE user_id = $1", user_id)
        return int(result.split()[-1])

    async def settings(self, user_id: uuid.UUID) -> NotificationSettings:
        dnd = await self._pool.fetchval(
            "SELECT do_not_disturb FROM notification_preferences WHERE user_id = $1", user_id
        )
        muted = await self._pool.fetch(
            "SELECT conversation_id FROM muted_conversations WHERE user_id = $1 "
            "ORDER BY muted_at, conversation_id",
            user_id,
        )
        return NotificationSettings(bool(dnd), [r["conversation_id"] for r in muted])

    async def set_do_not_disturb(self, user_id: uuid.UUID, on: bool) -> None:
        await self._pool.execute(
            """INSERT INTO notification_preferences (user_id, do_not_disturb) VALUES ($1, $2)
               ON CONFLICT (user_id) DO UPDATE
                  SET do_not_disturb = excluded.do_not_disturb, updated_at = now()""",
            user_id,
            on,
        )

    async def is_member(self, user_id: uuid.UUID, conversation_id: uuid.UUID) -> bool:
        found = await self._pool.fetchval(
            "SELECT true FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
            conversation_id,
            user_id,
        )
        return found is not None

    async def set_muted(self, user_id: uuid.UUID, conversation_id: uuid.UUID, muted: bool) -> None:
        """Idempotent both ways."""
        if muted:
            await self._pool.execute(
                "INSERT INTO muted_conversations (user_id, conversation_id) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING",
                user_id,
                conversation_id,
            )
        else:
            await self._pool.execute(
                "DELETE FROM muted_conversations WHERE user_id = $1 AND conversation_id = $2",
                user_id,
                conversation_id,
            )
