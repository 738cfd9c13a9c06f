"""The notifier's decisions, apart from any I/O: when a pending notification falls due, whether a
due one is sent, suppressed or put off, the idempotency key of a notification, and what a
webhook answer means.

Presence is not consulted on purpose: a device may leave right after it was seen online. What
decides is the member's durable read position (`ack`), read when the notification falls due.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from realchat.backoff import delay_ceiling

#: Namespace of the idempotency keys (uuid5): any fixed value, never to change.
_KEY_NAMESPACE = uuid.UUID("5d3f0c39-5a52-4b0e-9f53-8c1c0f1f2a71")


class Suppressed(enum.StrEnum):
    """Why a due notification was not sent (the `reason` label of the metric)."""

    ACKED = "acked"
    MUTED = "muted"
    DO_NOT_DISTURB = "do_not_disturb"
    NO_DEVICES = "no_devices"
    NOT_MEMBER = "not_member"


@dataclass(frozen=True)
class Pending:
    """A claimed pending notification with what the decision needs to know about its user."""

    user_id: uuid.UUID
    conversation_id: uuid.UUID
    first_seq: int
    last_seq: int
    message_count: int
    sender_id: uuid.UUID
    attempts: int
    #: The member's read position; None if the user is no longer a member.
    acked_seq: int | None
    muted: bool
    do_not_disturb: bool
    device_count: int
    last_sent_at: datetime | None


@dataclass(frozen=True)
class Send:
    #: Unread messages covered, after what the user already read of the range.
    message_count: int
    first_seq: int
    last_seq: int


@dataclass(frozen=True)
class Suppress:
    reason: Suppressed


@dataclass(frozen=True)
class Defer:
    """Too soon after the last notification of the conversation: look again at `until`."""

    until: datetime


Decision = Send | Suppress | Defer


def due_at(
    first_at: datetime, delay_s: float, last_sent_at: datetime | None, collapse_s: float
) -> datetime:
    """`delay_s` after the first message, and no sooner than `collapse_s` after the last
    notification sent for the same user and conversation."""
    due = first_at + timedelta(seconds=delay_s)
    if last_sent_at is not None:
        due = max(due, last_sent_at + timedelta(seconds=collapse_s))
    return due


def decide(pending: Pending, now: datetime, collapse_s: float) -> Decision:
    """What to do with a due notification. Reading suppresses first (the user saw it, whatever
    their settings); then the user's choices; then whether there is anywhere to push to."""
    if pending.acked_seq is None:
        return Suppress(Suppressed.NOT_MEMBER)
    if pending.acked_seq >= pending.last_seq:
        return Suppress(Suppressed.ACKED)
    if pending.muted:
        return Suppress(Suppressed.MUTED)
    if pending.do_not_disturb:
        return Suppress(Suppressed.DO_NOT_DISTURB)
    if pending.device_count == 0:
        return Suppress(Suppressed.NO_DEVICES)
    if pending.last_sent_at is not None and pending.attempts == 0:
        not_before = pending.last_sent_at + timedelta(seconds=collapse_s)
        if now < not_before:
            return Defer(not_before)
    first_unread = max(pending.first_seq, pending.acked_seq + 1)
    unread = min(pending.message_count, pending.last_seq - first_unread + 1)
    return Send(message_count=unread, first_seq=first_unread, last_seq=pending.last_seq)


def idempotency_key(user_id: uuid.UUID, conversation_id: uuid.UUID, first_seq: int) -> uuid.UUID:
    """The same for every attempt at one notification, whatever accumulated into it meanwhile
    (the first message never changes), and different for the next notification of the
    conversation (it starts after this one's last message)."""
    return uuid.uuid5(_KEY_NAMESPACE, f"{user_id}:{conversation_id}:{first_seq}")


class WebhookVerdict(enum.StrEnum):
    ACCEPTED = "accepted"
    #: Worth another attempt: the gateway is down, overloaded, or asked us to come back.
    RETRY = "retry"
    #: The gateway refused this notification for what it is: another attempt cannot help.
    REJECTED = "rejected"


#: 4xx answers that say "not now" rather than "never".
_RETRYABLE_CLIENT_ERRORS = frozenset({408, 409, 425, 429})


def webhook_verdict(status: int | None) -> WebhookVerdict:
    """`status` None: no answer (refused connection, timeout)."""
    if status is None or status >= 500 or status in _RETRYABLE_CLIENT_ERRORS:
        return WebhookVerdict.RETRY
    if 200 <= status < 300:
        return WebhookVerdict.ACCEPTED
    return WebhookVerdict.REJECTED


def retry_delay_s(attempts: int, initial_s: float, max_s: float) -> float:
    """Capped exponential backoff after the `attempts`-th failure (no jitter: the rows of one
    outage fall due spread over the time they first fell due)."""
    return delay_ceiling(max(0, attempts - 1), initial_s, max_s)
