from pathlib import Path

from realchat.bus.admin import realchat_topics
from realchat.events.topics import MESSAGE_CREATED
from realchat.stack.kafka import KafkaCluster, new_cluster_id


def cluster(nodes: int) -> KafkaCluster:
    return KafkaCluster(
        state_dir=Path("/tmp/x"),
        libs_dir=Path("/tmp/libs"),
        host="127.0.0.1",
        base_port=40000,
        nodes=nodes,
        heap_mb=256,
    )


def test_single_node_is_combined_broker_and_controller_without_auto_create() -> None:
    props = cluster(1).node(1).server_properties()
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:40001"
    assert props["auto.create.topics.enable"] == "false"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:40000"


def test_three_nodes_replicate_three_ways_and_require_two_in_sync() -> None:
    c = cluster(3)
    props = c.node(2).server_properties()
    assert props["node.id"] == "2"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:40010,CONTROLLER://127.0.0.1:40011"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:40001,2@127.0.0.1:40011,3@127.0.0.1:40021"
    )
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    assert c.bootstrap_servers == "127.0.0.1:40000,127.0.0.1:40010,127.0.0.1:40020"
    assert [n.name for n in c.all_nodes()] == ["kafka-1", "kafka-2", "kafka-3"]


def test_topics_carry_explicit_partitions_and_durability_settings() -> None:
    specs = {s.name: s for s in realchat_topics(12, 3, 2)}
    created = specs[MESSAGE_CREATED]
    assert created.partitions == 12
    assert created.replication_factor == 3
    assert created.config["min.insync.replicas"] == "2"
    assert all(name.endswith(".v1") for name in specs)


def test_cluster_ids_never_look_like_an_option() -> None:
    ids = {new_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
