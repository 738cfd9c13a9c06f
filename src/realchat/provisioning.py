"""One-shot provisioning for deployments that `realchat stack` does not run (Docker Compose, an
orchestrator): the database schema (`realchat migrate`) and the Kafka topics (`realchat topics
create`). Both are idempotent and safe to run before every start, from several places at once."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from realchat.bus.admin import TopicMismatchError, ensure_topics, realchat_topics
from realchat.config import Settings
from realchat.storage.migrations import MigrationError, migrate_database

Reporter = Callable[[str], None]


async def migrate_command(settings: Settings, report: Reporter) -> int:
    """Apply the pending migrations to `REALCHAT_DATABASE__URL`."""
    url = settings.database.url
    if url is None:
        report("error: REALCHAT_DATABASE__URL is not set")
        return 1
    try:
        applied = await migrate_database(url.get_secret_value())
    except MigrationError as exc:
        report(f"error: {exc}")
        return 1
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "none (up to date)"
    report(f"migrations applied: {names}")
    return 0


def create_topics_command(settings: Settings, report: Reporter) -> int:
    """Create RealChat's topics with `REALCHAT_KAFKA__PARTITIONS`, `__REPLICATION_FACTOR` and
    `__MIN_INSYNC_REPLICAS`; refuse (exit 1) if one exists with another partition count."""
    kafka = settings.kafka
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    specs = realchat_topics(kafka.partitions, kafka.replication_factor, kafka.min_insync_replicas)
    try:
        ensure_topics(admin, specs)
    except (TopicMismatchError, KafkaException, RuntimeError) as exc:
        report(f"error: {exc}")
        return 1
    report(f"topics ready: {', '.join(s.name for s in specs)} ({kafka.partitions} partitions)")
    return 0
