"""The notifier's SQL (migration 0004): pending notifications, what was decided per
(user, conversation), and the dead letters."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from realchat.config import NotifierSettings
from realchat.events.models import MessageCreated
from realchat.notifier.decision import Pending
from realchat.notifier.payload import PushDevice

if TYPE_CHECKING:
    from realchat.storage.pool import Connection


@dataclass(frozen=True)
class Recipient:
    """One recipient of one message: a row of the upsert."""

    user_id: uuid.UUID
    conversation_id: uuid.UUID
    seq: int
    sender_id: uuid.UUID
    created_at: datetime


def recipients(events: Iterable[MessageCreated]) -> list[Recipient]:
    """Everyone a message may need to reach, except its sender."""
    return [
        Recipient(user, e.conversation_id, e.seq, e.sender_id, e.created_at)
        for e in events
        for user in dict.fromkeys(e.recipients)
        if user != e.sender_id
    ]


_RECORD = """
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::timestamptz[])
        AS r (user_id, conversation_id, seq, sender_id, created_at)
), fresh AS (
    -- Re-delivered events (already pending, or already decided) are left out.
    SELECT i.* FROM incoming i
      LEFT JOIN notification_cursors c USING (user_id, conversation_id)
      LEFT JOIN pending_notifications p USING (user_id, conversation_id)
     WHERE i.seq > coalesce(c.handled_seq, 0) AND i.seq > coalesce(p.last_seq, 0)
       AND i.created_at > now() - make_interval(secs => $8)
), grouped AS (
    SELECT user_id, conversation_id, min(seq) AS first_seq, max(seq) AS last_seq,
           count(DISTINCT seq)::integer AS message_count,
           (array_agg(sender_id ORDER BY seq DESC))[1] AS sender_id,
           min(created_at) AS first_at
      FROM fresh GROUP BY user_id, conversation_id
)
INSERT INTO pending_notifications AS p
       (user_id, conversation_id, first_seq, last_seq, message_count, sender_id, first_at, due_at)
SELECT g.user_id, g.conversation_id, g.first_seq, g.last_seq, g.message_count, g.sender_id,
       g.first_at,
       greatest(g.first_at + make_interval(secs => $6),
                c.last_sent_at + make_interval(secs => $7))
  FROM grouped g LEFT JOIN notification_cursors c USING (user_id, conversation_id)
ON CONFLICT (user_id, conversation_id) DO UPDATE
   SET last_seq = excluded.last_seq,
       message_count = p.message_count + excluded.message_count,
       sender_id = excluded.sender_id
 WHERE excluded.last_seq > p.last_seq
"""


async def record(conn: Connection, rows: Sequence[Recipient], settings: NotifierSettings) -> None:
    """Add messages to their recipients' pending notifications (one statement for a batch);
    messages older than `max_message_age_s` are left out."""
    if not rows:
        return
    await conn.execute(
        _RECORD,
        [r.user_id for r in rows],
        [r.conversation_id for r in rows],
        [r.seq for r in rows],
        [r.sender_id for r in rows],
        [r.created_at for r in rows],
        settings.delay_s,
        settings.collapse_s,
        settings.max_message_age_s,
    )


@dataclass(frozen=True)
class Claimed:
    pending: Pending
    first_at: datetime
    devices: list[PushDevice]


_CLAIM = """
SELECT p.user_id, p.conversation_id, p.first_seq, p.last_seq, p.message_count, p.sender_id,
       p.first_at, p.attempts, m.acked_seq, (mu.user_id IS NOT NULL) AS muted,
       coalesce(pref.do_not_disturb, false) AS do_not_disturb, c.last_sent_at
  FROM pending_notifications p
  LEFT JOIN conversation_members m
         ON m.conversation_id = p.conversation_id AND m.user_id = p.user_id
  LEFT JOIN muted_conversations mu
         ON mu.conversation_id = p.conversation_id AND mu.user_id = p.user_id
  LEFT JOIN notification_preferences pref ON pref.user_id = p.user_id
  LEFT JOIN notification_cursors c
         ON c.conversation_id = p.conversation_id AND c.user_id = p.user_id
 WHERE p.due_at <= now()
 ORDER BY p.due_at
 LIMIT $1
   FOR UPDATE OF p SKIP LOCKED
"""


async def claim_due(conn: Connection, limit: int) -> tuple[datetime, list[Claimed]]:
    """Lock up to `limit` due rows no other replica holds (inside the caller's transaction),
    with their users' devices; and the database's clock, which every due time is on."""
    now: datetime = await conn.fetchval("SELECT now()")
    rows = await conn.fetch(_CLAIM, limit)
    devices = await devices_of(conn, list({r["user_id"] for r in rows}))
    claimed = []
    for r in rows:
        found = devices.get(r["user_id"], [])
        pending = Pending(
            user_id=r["user_id"],
            conversation_id=r["conversation_id"],
            first_seq=r["first_seq"],
            last_seq=r["last_seq"],
            message_count=r["message_count"],
            sender_id=r["sender_id"],
            attempts=r["attempts"],
            acked_seq=r["acked_seq"],
            muted=r["muted"],
            do_not_disturb=r["do_not_disturb"],
            device_count=len(found),
            last_sent_at=r["last_sent_at"],
        )
        claimed.append(Claimed(pending, r["first_at"], found))
    return now, claimed


async def devices_of(
    conn: Connection, user_ids: Sequence[uuid.UUID]
) -> Mapping[uuid.UUID, list[PushDevice]]:
    rows = await conn.fetch(
        "SELECT id, user_id, platform, token FROM push_devices WHERE user_id = ANY($1::uuid[]) "
        "ORDER BY created_at, id",
        user_ids,
    )
    found: dict[uuid.UUID, list[PushDevice]] = defaultdict(list)
    for r in rows:
        found[r["user_id"]].append(
            PushDevice(device_id=r["id"], platform=r["platform"], token=r["token"])
        )
    return found


async def finish(conn: Connection, pending: Pending, *, sent: bool) -> None:
    """The notification was decided (sent, suppressed or dead-lettered): its messages are done
    with, and a sent one starts the collapse interval."""
    await conn.execute(
        "DELETE FROM pending_notifications WHERE user_id = $1 AND conversation_id = $2",
        pending.user_id,
        pending.conversation_id,
    )
    await conn.execute(
        """INSERT INTO notification_cursors (user_id, conversation_id, handled_seq, last_sent_at)
           VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END)
           ON CONFLICT (user_id, conversation_id) DO UPDATE
              SET handled_seq = greatest(notification_cursors.handled_seq, excluded.handled_seq),
                  last_sent_at = coalesce(excluded.last_sent_at, notification_cursors.last_sent_at)
        """,
        pending.user_id,
        pending.conversation_id,
        pending.last_seq,
        sent,
    )


async def postpone(
    conn: Connection, pending: Pending, until: datetime, *, error: str | None = None
) -> None:
    """Look again at `until`; with `error`, after a failed attempt (counted)."""
    await conn.execute(
        """UPDATE pending_notifications
              SET due_at = $3,
                  attempts = attempts + CASE WHEN $4::text IS NULL THEN 0 ELSE 1 END,
                  last_error = coalesce($4, last_error)
            WHERE user_id = $1 AND conversation_id = $2""",
        pending.user_id,
        pending.conversation_id,
        until,
        error,
    )


async def dead_letter(
    conn: Connection, key: uuid.UUID, pending: Pending, payload: bytes, error: str
) -> None:
    await conn.execute(
        """INSERT INTO notification_dead_letters
               (idempotency_key, user_id, conversation_id, payload, attempts, error)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6)""",
        key,
        pending.user_id,
        pending.conversation_id,
        payload.decode(),
        pending.attempts + 1,
        error,
    )
    await finish(conn, pending, sent=False)


async def backlog(pool: asyncpg.Pool) -> tuple[int, float]:
    """Pending notifications, and how late the most overdue one is (seconds, 0 if none)."""
    row = await pool.fetchrow(
        "SELECT count(*) AS n, "
        "coalesce(extract(epoch FROM now() - min(due_at)), 0)::float8 AS late "
        "FROM pending_notifications"
    )
    assert row is not None
    return int(row["n"]), max(0.0, float(row["late"]))
