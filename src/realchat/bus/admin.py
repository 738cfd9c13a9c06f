"""Creating RealChat's topics (the brokers have auto-create off): explicitly, with the configured
partition count, which is fixed at creation since it maps keys to partitions;
docs/operations.md describes the only safe way to change it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from realchat.events.topics import TOPICS

log = structlog.get_logger(__name__)

RETENTION_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


def realchat_topics(
    partitions: int, replication_factor: int, min_insync_replicas: int
) -> list[TopicSpec]:
    config = {
        "cleanup.policy": "delete",
        "retention.ms": str(RETENTION_MS),
        "min.insync.replicas": str(min_insync_replicas),
    }
    return [TopicSpec(name, partitions, replication_factor, config) for name in TOPICS]


class TopicMismatchError(RuntimeError):
    """An existing topic has another partition count than configured: ordering would break."""


def ensure_topics(admin: AdminClient, specs: Iterable[TopicSpec], timeout_s: float = 30) -> None:
    """Create missing topics; refuse to run against a topic whose partition count differs."""
    specs = list(specs)
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [s for s in specs if s.name not in existing]
    for spec in specs:
        if spec.name in existing and len(existing[spec.name].partitions) != spec.partitions:
            raise TopicMismatchError(
                f"topic {spec.name} has {len(existing[spec.name].partitions)} partitions, "
                f"configured {spec.partitions}; see docs/operations.md (repartitioning)"
            )
    if not missing:
        return
    futures = admin.create_topics(
        [
            NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config))
            for s in missing
        ],
        request_timeout=timeout_s,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"creating topic {name} failed: {exc}") from exc
    _wait_for_leaders(admin, [s.name for s in missing], timeout_s)


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """A created topic is usable once every partition has a leader; return only then."""
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=timeout_s).topics
        leaderless = [
            name
            for name in names
            if name not in topics or any(p.leader < 0 for p in topics[name].partitions.values())
        ]
        if not leaderless:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics without partition leaders: {', '.join(leaderless)}")
        time.sleep(0.1)


#: How long a stopping process waits for a group's deletion: the brokers may be gone.
DELETE_GROUP_TIMEOUT_S = 2.0


def delete_group(bootstrap_servers: str, group: str) -> bool:
    """Delete an empty consumer group (its member just left); False, logged, if the brokers did
    not do it in time: the group then expires with `offsets.retention.minutes`."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 3})
    futures = admin.delete_consumer_groups([group], request_timeout=DELETE_GROUP_TIMEOUT_S)
    try:
        futures[group].result(timeout=DELETE_GROUP_TIMEOUT_S)
    except Exception as exc:  # any failure leaves only an idle group behind
        log.warning("consumer group not deleted", group=group, error=str(exc))
        return False
    return True
