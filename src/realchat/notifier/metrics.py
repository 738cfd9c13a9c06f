"""The notifier's metrics (every replica exports its own; dashboards sum them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from realchat.notifier.decision import Suppressed

EVENTS_RECORDED = Counter(
    "realchat_notifier_messages_recorded_total",
    "Message events turned into pending notifications (one per event, all recipients at once)",
)
SENT = Counter("realchat_notifier_sent_total", "Notifications the push gateway accepted")
SUPPRESSED = Counter(
    "realchat_notifier_suppressed_total",
    "Due notifications not sent, by reason (acked, muted, do_not_disturb, no_devices, not_member)",
    ["reason"],
)
FAILED = Counter(
    "realchat_notifier_failed_total",
    "Webhook attempts that failed, by outcome (retried later, or dead-lettered)",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "realchat_notifier_webhook_latency_seconds",
    "Push gateway webhook calls, request to answer (or failure)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PENDING = Gauge("realchat_notifier_pending_count", "Pending notifications (due or not)")
OVERDUE = Gauge(
    "realchat_notifier_overdue_seconds", "How late the most overdue pending notification is"
)

#: Every reason and outcome exported from the start, at 0: a rate of 0, not a missing series.
for _reason in Suppressed:
    SUPPRESSED.labels(reason=_reason.value)
for _outcome in ("retried", "dead_lettered"):
    FAILED.labels(outcome=_outcome)
