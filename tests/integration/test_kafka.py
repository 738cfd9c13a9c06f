"""The broker is a real Kafka: topics as configured, kcat can read what we produce."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from realchat.bus.admin import realchat_topics
from realchat.stack.supervisor import Stack
from tests.support.kafka import QUIET, create_topic, durable_producer, produce_all


def test_project_topics_exist_with_configured_partitions(stack: Stack) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers, **QUIET})
    topics = admin.list_topics(timeout=10).topics
    for spec in realchat_topics(stack.kafka_settings.partitions, 1, 1):
        assert spec.name in topics
        assert len(topics[spec.name].partitions) == spec.partitions


def test_topic_configs_on_the_broker_match_the_project_spec(stack: Stack) -> None:
    """Read back from the broker itself, not from what we asked for."""
    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers, **QUIET})
    specs = realchat_topics(
        stack.kafka_settings.partitions,
        stack.kafka.replication_factor,
        stack.kafka.min_insync_replicas,
    )
    resources = [ConfigResource(ConfigResource.Type.TOPIC, spec.name) for spec in specs]
    described = admin.describe_configs(resources, request_timeout=10)
    for spec, resource in zip(specs, resources, strict=True):
        configs = described[resource].result(timeout=10)
        assert set(spec.config) == {"cleanup.policy", "retention.ms", "min.insync.replicas"}
        for name, value in spec.config.items():
            assert configs[name].value == value, (spec.name, name)
            assert not configs[name].is_default, (spec.name, name)  # set on the topic itself


def test_broker_does_not_auto_create_topics(stack: Stack) -> None:
    producer = durable_producer(stack.kafka.bootstrap_servers, **{"message.timeout.ms": 3000})
    missing = f"not.created.{uuid.uuid4().hex[:8]}"
    # librdkafka reports either "unknown topic" or a timeout waiting for it to appear.
    with pytest.raises(RuntimeError, match="delivery failed"):
        produce_all(producer, missing, [(b"k", b"v")], timeout_s=10)
    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers, **QUIET})
    assert missing not in admin.list_topics(timeout=10).topics


def test_kcat_lists_project_topics_and_reads_back_our_record(stack: Stack) -> None:
    bootstrap = stack.kafka.bootstrap_servers
    listing = subprocess.run(
        ["kcat", "-b", bootstrap, "-L"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    for spec in realchat_topics(stack.kafka_settings.partitions, 1, 1):
        assert f'topic "{spec.name}" with {spec.partitions} partitions' in listing

    topic = create_topic(bootstrap, partitions=1, replication=1)
    marker = uuid.uuid4().hex
    produce_all(durable_producer(bootstrap), topic, [(b"conv-1", marker.encode())])
    read = subprocess.run(
        [
            "kcat",
            "-b",
            bootstrap,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-c",
            "1",
            "-e",
            "-f",
            "%k=%s\n",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert read.strip() == f"conv-1={marker}"
