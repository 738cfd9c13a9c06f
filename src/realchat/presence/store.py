"""The presence service's SQL: announced state per user, and transitions written together with
their outbox event (one transaction), so an announced transition is never lost and never doubled.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from realchat.events.models import PresenceStatus
from realchat.events.topics import PRESENCE_OFFLINE, PRESENCE_ONLINE
from realchat.outbox.writer import outbox_shard

#: Creates the row if needed and, in the same statement, takes its lock until commit.
_LOCK = """
INSERT INTO presence (user_id, status) VALUES ($1::uuid, 'offline')
ON CONFLICT (user_id) DO UPDATE SET status = presence.status
RETURNING status, version
"""

_MOVE = """
WITH moved AS (
    UPDATE presence
       SET status = $2::text, version = version + 1, changed_at = clock_timestamp()
     WHERE user_id = $1::uuid
 RETURNING version, changed_at
), event AS (
    INSERT INTO outbox (shard, topic, event_type, partition_key, payload)
    SELECT $3::int, $4::text, $4::text, $1::text,
           convert_to(jsonb_build_object(
               'event_id', gen_random_uuid(),
               'user_id', $1::uuid,
               'status', $2::text,
               'version', moved.version,
               'changed_at', moved.changed_at,
               -- Who shares a conversation with the user and neither blocked (migration 0004).
               'recipients', (SELECT coalesce(jsonb_agg(peer), '[]'::jsonb)
                                FROM presence_peers($1::uuid) AS peer)
           )::text, 'UTF8')
      FROM moved
 RETURNING id
)
SELECT moved.version, moved.changed_at FROM moved, event
"""

TOPIC_OF: dict[PresenceStatus, str] = {"online": PRESENCE_ONLINE, "offline": PRESENCE_OFFLINE}

#: Looks at Redis while the row is locked: the status to announce, or None to decide nothing now.
Observation = Callable[[], Awaitable[PresenceStatus | None]]


@dataclass(frozen=True)
class Transition:
    user_id: uuid.UUID
    status: PresenceStatus
    version: int
    changed_at: datetime


@dataclass(frozen=True)
class Reconciled:
    """The announced status after a reconciliation, and the transition if it made one."""

    status: PresenceStatus
    transition: Transition | None


class PresenceStore:
    def __init__(self, pool: asyncpg.Pool, outbox_shards: int) -> None:
        self._pool = pool
        self._shards = outbox_shards

    async def reconcile(self, user_id: uuid.UUID, observe: Observation) -> Reconciled:
        """Announce what Redis says now if it differs from what was announced.

        The observation happens under the user's row lock: two replicas reconciling the same
        user take turns, and the second one sees the first one's announcement."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow(_LOCK, user_id)
            assert current is not None
            observed = await observe()
            if observed is None or observed == current["status"]:
                return Reconciled(current["status"], None)
            moved = await conn.fetchrow(
                _MOVE,
                user_id,
                observed,
                outbox_shard(user_id, self._shards),
                TOPIC_OF[observed],
            )
            assert moved is not None
            return Reconciled(
                observed, Transition(user_id, observed, moved["version"], moved["changed_at"])
            )

    async def online_users(self) -> set[uuid.UUID]:
        rows = await self._pool.fetch("SELECT user_id FROM presence WHERE status = 'online'")
        return {row["user_id"] for row in rows}
