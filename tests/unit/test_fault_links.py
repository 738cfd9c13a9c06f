"""A stack with fault links sends exactly three kinds of traffic through its fault proxy: the chat
service's PostgreSQL connections, the gateways' and the publishers' Kafka connections. Everything
else (the broker's own replication, presence's writes, the tools) keeps the direct way, so a link
fault hits one link only."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from realchat.chaos import faults as chaos_faults
from realchat.chaos.faults import (
    FAULTS,
    PROCESS_FAULTS,
    SHORT_FAULTS,
    SINGLE_BROKER_FAULTS,
    Fault,
    bus_outage,
    link_faults,
    random_schedule,
)
from realchat.chaos.run import known_faults
from realchat.config import PresenceSettings
from realchat.stack.faultproxy import latency_toxics, partition_toxics
from realchat.stack.layout import block_offsets, block_settings, block_stack
from realchat.stack.supervisor import Stack

BASE = 30000


def stack(fault_links: bool) -> Stack:
    shape = block_stack(Path("/tmp/links"), BASE, kafka_nodes=3, gateways=2, publishers=2)
    shape = shape.model_copy(update={"fault_links": fault_links})
    return Stack(block_settings(shape, BASE, PresenceSettings()))


def env_of(s: Stack, name: str) -> dict[str, str]:
    [service] = [x for x in s.services() if x.name == name]
    return dict(service.env)


def test_without_fault_links_nothing_goes_through_a_proxy() -> None:
    plain = stack(fault_links=False)
    assert plain.fault_proxy() is None
    assert "fault-proxy" not in {c.name for c in plain.components()}
    props = plain.kafka.node(1).server_properties()
    assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{BASE + 10}"
    direct = plain.kafka.bootstrap_servers
    for name in ("chat", "gateway-1", "outbox-publisher-2"):
        assert env_of(plain, name)["REALCHAT_KAFKA__BOOTSTRAP_SERVERS"] == direct


def test_each_node_advertises_each_link_at_its_proxy() -> None:
    s = stack(fault_links=True)
    proxy = s.fault_proxy()
    assert proxy is not None
    links = {link.name: link for link in proxy.links}
    for node in (1, 2, 3):
        props = s.kafka.node(node).server_properties()
        client = BASE + 10 * node
        listeners = props["listeners"].split(",")
        advertised = props["advertised.listeners"].split(",")
        assert f"PLAINTEXT://127.0.0.1:{client}" in advertised  # brokers replicate directly
        assert props["inter.broker.listener.name"] == "PLAINTEXT"
        for listener, name in (("GATEWAYS", "gateways-kafka"), ("PUBLISHERS", "publishers-kafka")):
            link = links[f"{name}-{node}"]
            assert f"{listener}://127.0.0.1:{link.upstream_port}" in listeners
            assert f"{listener}://127.0.0.1:{link.listen_port}" in advertised
            assert f"{listener}:PLAINTEXT" in props["listener.security.protocol.map"]
    ports = [link.listen_port for link in proxy.links] + [proxy.port]
    ports += [link.upstream_port for link in proxy.links if link.name != "chat-postgres"]
    assert len(set(ports)) == len(ports)
    assert {p - BASE for p in ports} <= set(block_offsets(kafka_nodes=3, gateways=2, publishers=2))


def test_services_use_their_link_and_only_theirs() -> None:
    s = stack(fault_links=True)
    proxy = s.fault_proxy()
    assert proxy is not None
    links = {link.name: link for link in proxy.links}
    postgres_link = links["chat-postgres"]
    assert postgres_link.upstream_port == s.settings.postgres_port
    assert f":{postgres_link.listen_port}/" in env_of(s, "chat")["REALCHAT_DATABASE__URL"]
    assert f":{s.settings.postgres_port}/" in env_of(s, "presence")["REALCHAT_DATABASE__URL"]
    assert f":{s.settings.postgres_port}/" in env_of(s, "gateway-1")["REALCHAT_DATABASE__URL"]
    for service, name in (
        ("gateway-2", "gateways-kafka"),
        ("outbox-publisher-1", "publishers-kafka"),
    ):
        expected = ",".join(f"127.0.0.1:{links[f'{name}-{n}'].listen_port}" for n in (1, 2, 3))
        assert env_of(s, service)["REALCHAT_KAFKA__BOOTSTRAP_SERVERS"] == expected
    assert env_of(s, "chat")["REALCHAT_KAFKA__BOOTSTRAP_SERVERS"] == s.kafka.bootstrap_servers
    names = [c.name for c in s.components()]
    assert names.index("fault-proxy") < names.index("chat")  # links exist before their users


def test_faults_cover_every_link_with_latency_loss_and_a_partition() -> None:
    assert list(SHORT_FAULTS) == list(FAULTS)  # CI runs every fault the full run has
    for link in ("postgres-link", "gateways-kafka-link", "publishers-kafka-link"):
        names = {f"{link}-latency", f"{link}-lossy", f"{link}-partition"}
        assert names <= set(link_faults(1, 1))
        assert names <= set(FAULTS)


def test_toxics_act_in_both_directions() -> None:
    for toxics in (latency_toxics(200), partition_toxics()):
        assert {t["stream"] for t in toxics} == {"upstream", "downstream"}
        assert all(t["toxicity"] == 1.0 for t in toxics)
    [blackhole] = {t["attributes"]["timeout"] for t in partition_toxics()}
    assert blackhole == 0  # held until healed, never closed by the proxy on its own


def test_a_random_schedule_applies_every_fault_as_often_and_repeats_with_its_seed() -> None:
    faults = list(SHORT_FAULTS.values())
    drawn = random_schedule(faults, rounds=20, seed=7)
    assert Counter(f.name for f in drawn) == {f.name: 20 for f in faults}
    assert [f.name for f in drawn] == [f.name for f in random_schedule(faults, 20, seed=7)]
    assert [f.name for f in drawn] != [f.name for f in random_schedule(faults, 20, seed=8)]
    assert all(a.name != b.name for a, b in itertools.pairwise(drawn))


class _Recorder:
    """A stack that records what a fault kills and restarts, with the shape's components."""

    def __init__(self, kafka_nodes: int) -> None:
        shape = block_stack(Path("/tmp/links"), BASE, kafka_nodes, gateways=2, publishers=2)
        self.names = {
            c.name for c in Stack(block_settings(shape, BASE, PresenceSettings())).components()
        }
        self.killed: list[str] = []
        self.started: list[str] = []

    async def kill_component(self, name: str, sig: object = None) -> None:
        assert name in self.names, f"no component {name} in this stack"
        self.killed.append(name)

    async def start_component(self, name: str) -> None:
        self.started.append(name)


@pytest.mark.parametrize(
    ("kafka_nodes", "faults"),
    [(3, {**PROCESS_FAULTS, "kafka-majority": bus_outage(10)}), (1, SINGLE_BROKER_FAULTS)],
)
async def test_every_process_fault_kills_and_restarts_components_its_stack_has(
    kafka_nodes: int, faults: dict[str, Fault], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(chaos_faults.asyncio, "sleep", no_wait)
    for fault in faults.values():
        stack = _Recorder(kafka_nodes)
        await fault.run(stack)  # type: ignore[arg-type]
        assert stack.killed, fault.name
        assert stack.started == stack.killed, fault.name


def test_a_one_node_stack_takes_its_brokers_outage_for_a_minute_and_nothing_else() -> None:
    assert [(f.name, "60 s" in f.what) for f in known_faults(False, 1).values()] == [
        ("kafka-single", True)
    ]
    assert [f.name for f in known_faults(True, 1).values()] == ["kafka-single"]
    assert known_faults(False, 3) == FAULTS
