"""The notifier's decisions, without a database, a broker or a push gateway."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from realchat.notifier.decision import (
    Defer,
    Pending,
    Send,
    Suppress,
    Suppressed,
    WebhookVerdict,
    decide,
    due_at,
    idempotency_key,
    retry_delay_s,
    webhook_verdict,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
USER, CONVERSATION, SENDER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def pending(**changes: object) -> Pending:
    base = Pending(
        user_id=USER,
        conversation_id=CONVERSATION,
        first_seq=5,
        last_seq=9,
        message_count=5,
        sender_id=SENDER,
        attempts=0,
        acked_seq=4,
        muted=False,
        do_not_disturb=False,
        device_count=1,
        last_sent_at=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_unread_messages_are_sent_with_their_count_and_range() -> None:
    assert decide(pending(), NOW, 60) == Send(message_count=5, first_seq=5, last_seq=9)


def test_read_up_to_the_last_message_suppresses_as_acked() -> None:
    assert decide(pending(acked_seq=9), NOW, 60) == Suppress(Suppressed.ACKED)
    assert decide(pending(acked_seq=12), NOW, 60) == Suppress(Suppressed.ACKED)


def test_partly_read_sends_only_what_is_unread() -> None:
    assert decide(pending(acked_seq=7), NOW, 60) == Send(message_count=2, first_seq=8, last_seq=9)


def test_partly_read_count_never_exceeds_the_messages_collapsed() -> None:
    # seqs 5..9 hold 3 messages to the user (the user's own are not counted): 2 unread at most.
    decision = decide(pending(message_count=3, acked_seq=6), NOW, 60)
    assert decision == Send(message_count=3, first_seq=7, last_seq=9)


def test_reading_suppresses_before_the_users_settings_do() -> None:
    read = pending(acked_seq=9, muted=True, do_not_disturb=True, device_count=0)
    assert decide(read, NOW, 60) == Suppress(Suppressed.ACKED)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"acked_seq": None}, Suppressed.NOT_MEMBER),
        ({"muted": True}, Suppressed.MUTED),
        ({"do_not_disturb": True}, Suppressed.DO_NOT_DISTURB),
        ({"device_count": 0}, Suppressed.NO_DEVICES),
        ({"muted": True, "do_not_disturb": True}, Suppressed.MUTED),
    ],
)
def test_settings_and_missing_devices_suppress_with_their_reason(
    changes: dict[str, object], reason: Suppressed
) -> None:
    assert decide(pending(**changes), NOW, 60) == Suppress(reason)


def test_too_soon_after_the_last_notification_is_put_off_to_the_end_of_the_interval() -> None:
    last = NOW - timedelta(seconds=20)
    assert decide(pending(last_sent_at=last), NOW, 60) == Defer(last + timedelta(seconds=60))


def test_after_the_collapse_interval_it_is_sent() -> None:
    last = NOW - timedelta(seconds=61)
    assert isinstance(decide(pending(last_sent_at=last), NOW, 60), Send)


def test_a_retry_is_not_held_back_by_the_collapse_interval() -> None:
    last = NOW - timedelta(seconds=1)
    assert isinstance(decide(pending(last_sent_at=last, attempts=2), NOW, 60), Send)


def test_due_after_the_delay_from_the_first_message() -> None:
    assert due_at(NOW, 5, None, 60) == NOW + timedelta(seconds=5)


def test_due_no_sooner_than_the_collapse_interval_after_the_last_one_sent() -> None:
    last = NOW - timedelta(seconds=10)
    assert due_at(NOW, 5, last, 60) == last + timedelta(seconds=60)
    long_ago = NOW - timedelta(hours=1)
    assert due_at(NOW, 5, long_ago, 60) == NOW + timedelta(seconds=5)


def test_the_idempotency_key_names_one_notification() -> None:
    key = idempotency_key(USER, CONVERSATION, 5)
    assert idempotency_key(USER, CONVERSATION, 5) == key
    assert idempotency_key(USER, CONVERSATION, 10) != key
    assert idempotency_key(SENDER, CONVERSATION, 5) != key
    assert idempotency_key(USER, SENDER, 5) != key


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, WebhookVerdict.ACCEPTED),
        (202, WebhookVerdict.ACCEPTED),
        (204, WebhookVerdict.ACCEPTED),
        (None, WebhookVerdict.RETRY),
        (500, WebhookVerdict.RETRY),
        (503, WebhookVerdict.RETRY),
        (429, WebhookVerdict.RETRY),
        (408, WebhookVerdict.RETRY),
        (400, WebhookVerdict.REJECTED),
        (404, WebhookVerdict.REJECTED),
        (410, WebhookVerdict.REJECTED),
        (301, WebhookVerdict.REJECTED),
    ],
)
def test_webhook_answers(status: int | None, verdict: WebhookVerdict) -> None:
    assert webhook_verdict(status) is verdict


def test_retry_delay_doubles_up_to_the_cap() -> None:
    delays = [retry_delay_s(n, 1.0, 10.0) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
