"""The notifier's scheduler: claims due notifications, decides each (decision.py), calls the
webhook for those to send, and records the outcome - all in the transaction that claimed them.

Replicas share the work through `FOR UPDATE SKIP LOCKED`. A replica that dies mid-batch leaves
its transaction uncommitted: the rows come back as they were and are sent again under the same
idempotency key, so the push gateway delivers each notification once.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import asyncpg
import structlog

from realchat.config import NotifierSettings
from realchat.notifier import metrics, store
from realchat.notifier.decision import (
    Defer,
    Pending,
    Send,
    Suppress,
    Suppressed,
    WebhookVerdict,
    decide,
    idempotency_key,
    retry_delay_s,
)
from realchat.notifier.payload import PushNotification, encode
from realchat.notifier.store import Claimed
from realchat.notifier.webhook import Webhook, WebhookResult
from realchat.storage.pool import DATABASE_ERRORS

if TYPE_CHECKING:
    from realchat.storage.pool import Connection

log = structlog.get_logger(__name__)

#: What became of a claimed notification, for the metrics: suppressed (why), or the webhook's.
Outcome = Suppressed | Literal["sent", "retried", "dead_lettered"]


@dataclass(frozen=True)
class Sent:
    """A webhook call and its answer."""

    notification: PushNotification
    body: bytes
    result: WebhookResult


class Scheduler:
    def __init__(self, pool: asyncpg.Pool, webhook: Webhook, settings: NotifierSettings) -> None:
        self._pool = pool
        self._webhook = webhook
        self._settings = settings
        self._calls = asyncio.Semaphore(settings.concurrency)

    async def run(self, stop: asyncio.Event) -> None:
        """Work through due notifications; sleep a poll interval when there are none."""
        while not stop.is_set():
            try:
                handled = await self.run_batch()
            except DATABASE_ERRORS as exc:
                log.warning("notification batch failed; retrying", error=repr(exc))
                handled = 0
            if handled < self._settings.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._settings.poll_interval_s)

    async def run_batch(self) -> int:
        """One batch in one transaction; returns how many notifications it claimed. The webhook
        calls run concurrently; the writes follow one by one (one connection); the metrics
        count only what was committed."""
        counted: list[Outcome] = []
        async with self._pool.acquire() as conn, conn.transaction():
            now, claimed = await store.claim_due(conn, self._settings.batch_size)
            decisions = [decide(c.pending, now, self._settings.collapse_s) for c in claimed]
            to_send = [
                self._payload(c, d, now)
                for c, d in zip(claimed, decisions, strict=True)
                if isinstance(d, Send)
            ]
            answers = iter(await asyncio.gather(*(self._call(n) for n in to_send)))
            for c, d in zip(claimed, decisions, strict=True):
                if isinstance(d, Suppress):
                    await store.finish(conn, c.pending, sent=False)
                    counted.append(d.reason)
                elif isinstance(d, Defer):
                    await store.postpone(conn, c.pending, d.until)
                else:
                    counted.append(await self._record(conn, now, c.pending, next(answers)))
        _count(counted)
        return len(claimed)

    def _payload(self, claimed: Claimed, send: Send, now: datetime) -> PushNotification:
        pending = claimed.pending
        return PushNotification(
            idempotency_key=idempotency_key(
                pending.user_id, pending.conversation_id, pending.first_seq
            ),
            user_id=pending.user_id,
            devices=claimed.devices,
            conversation_id=pending.conversation_id,
            sender_id=pending.sender_id,
            message_count=send.message_count,
            first_seq=send.first_seq,
            last_seq=send.last_seq,
            attempt=pending.attempts + 1,
            created_at=now,
        )

    async def _call(self, notification: PushNotification) -> Sent:
        body = encode(notification)
        async with self._calls:
            result = await self._webhook.post(str(notification.idempotency_key), body)
        return Sent(notification, body, result)

    async def _record(
        self, conn: Connection, now: datetime, pending: Pending, sent: Sent
    ) -> Outcome:
        if sent.result.verdict is WebhookVerdict.ACCEPTED:
            await store.finish(conn, pending, sent=True)
            return "sent"
        out_of_attempts = pending.attempts + 1 >= self._settings.max_attempts
        if sent.result.verdict is WebhookVerdict.REJECTED or out_of_attempts:
            key = sent.notification.idempotency_key
            log.error("notification dead-lettered", key=str(key), error=sent.result.error)
            await store.dead_letter(conn, key, pending, sent.body, sent.result.error)
            return "dead_lettered"
        delay = retry_delay_s(
            pending.attempts + 1, self._settings.backoff_initial_s, self._settings.backoff_max_s
        )
        await store.postpone(conn, pending, now + timedelta(seconds=delay), error=sent.result.error)
        return "retried"


def _count(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        if isinstance(outcome, Suppressed):
            metrics.SUPPRESSED.labels(reason=outcome.value).inc()
        elif outcome == "sent":
            metrics.SENT.inc()
        else:
            metrics.FAILED.labels(outcome=outcome).inc()
