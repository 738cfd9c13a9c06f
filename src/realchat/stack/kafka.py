"""Apache Kafka in KRaft mode from the Maven Central jars: one combined broker+controller per node.

One node for development and most tests; three nodes (replication 3, min.insync.replicas 2) for the
failure tests, which SIGKILL nodes and start them again.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from realchat.stack.component import ComponentNotReadyError, component_log
from realchat.stack.process import ProcessSpec

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
"""


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java not found: Kafka needs Java 17")
    return java


def new_cluster_id() -> str:
    """A random cluster id that the storage tool's argument parser cannot mistake for an option.

    Base64 of 16 random bytes starts with "-" one time in 64; Kafka's own generator
    skips those ids for the same reason.
    """
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not candidate.startswith("-"):
            return candidate


@dataclass
class KafkaCluster:
    """The shape shared by every node: ports, cluster id, quorum."""

    state_dir: Path
    libs_dir: Path
    host: str
    base_port: int
    nodes: int
    heap_mb: int
    #: Extra client listeners, each advertised at a fault-proxy port (`stack.faultproxy`): the
    #: clients that bootstrap through a link's proxy are sent to the proxy for every node too.
    links: tuple[str, ...] = ()

    @property
    def root(self) -> Path:
        return self.state_dir / "kafka"

    def client_port(self, node_id: int) -> int:
        return self.base_port + 10 * (node_id - 1)

    def controller_port(self, node_id: int) -> int:
        return self.client_port(node_id) + 1

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{self.host}:{self.client_port(n)}" for n in range(1, self.nodes + 1))

    def link_port(self, node_id: int, link: str) -> int:
        """The node's listener for `link` (what the link's proxy connects to)."""
        return self.client_port(node_id) + 2 + self.links.index(link)

    def link_proxy_port(self, node_id: int, link: str) -> int:
        """Where the link's proxy for this node listens (what the node advertises on `link`)."""
        return self.client_port(node_id) + 2 + len(self.links) + self.links.index(link)

    def link_bootstrap_servers(self, link: str) -> str:
        return ",".join(
            f"{self.host}:{self.link_proxy_port(n, link)}" for n in range(1, self.nodes + 1)
        )

    @property
    def quorum_voters(self) -> str:
        return ",".join(
            f"{n}@{self.host}:{self.controller_port(n)}" for n in range(1, self.nodes + 1)
        )

    @property
    def replication_factor(self) -> int:
        return min(3, self.nodes)

    @property
    def min_insync_replicas(self) -> int:
        return 2 if self.nodes >= 3 else 1

    def cluster_id(self) -> str:
        """Generated once per state dir: every node of the cluster is formatted with it."""
        path = self.root / "cluster-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id() + "\n")
        return path.read_text().strip()

    def classpath(self) -> str:
        libs = self.libs_dir.resolve()
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise RuntimeError(f"Kafka jars missing in {libs} (run `make deps`)")
        return f"{libs}/*"

    def node(self, node_id: int) -> KafkaNode:
        return KafkaNode(cluster=self, node_id=node_id)

    def all_nodes(self) -> list[KafkaNode]:
        return [self.node(n) for n in range(1, self.nodes + 1)]


@dataclass
class KafkaNode:
    cluster: KafkaCluster
    node_id: int
    #: SIGTERM triggers a controlled shutdown (leadership moved away first).
    stop_signal: signal.Signals = signal.SIGTERM
    #: A controlled shutdown of the last nodes of a quorum can stall; SIGKILL is safe after it.
    stop_grace_s: float = 20.0

    @property
    def name(self) -> str:
        return "kafka" if self.cluster.nodes == 1 else f"kafka-{self.node_id}"

    @property
    def address(self) -> str:
        return f"{self.cluster.host}:{self.cluster.client_port(self.node_id)}"

    @property
    def log_path(self) -> Path:
        return component_log(self.cluster.state_dir, self.name)

    @property
    def dir(self) -> Path:
        return (self.cluster.root / f"node-{self.node_id}").resolve()

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def server_properties(self) -> dict[str, str]:
        c = self.cluster
        host, rf, node = c.host, c.replication_factor, self.node_id
        listeners = [f"PLAINTEXT://{host}:{c.client_port(node)}"]
        advertised = list(listeners)
        for link in c.links:
            listeners.append(f"{link}://{host}:{c.link_port(node, link)}")
            advertised.append(f"{link}://{host}:{c.link_proxy_port(node, link)}")
        protocols = ["CONTROLLER", "PLAINTEXT", *c.links]
        return {
            "process.roles": "broker,controller",
            "node.id": str(node),
            "controller.quorum.voters": c.quorum_voters,
            "listeners": ",".join([*listeners, f"CONTROLLER://{host}:{c.controller_port(node)}"]),
            "advertised.listeners": ",".join(advertised),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(f"{p}:PLAINTEXT" for p in protocols),
            "log.dirs": str(self.data_dir),
            "auto.create.topics.enable": "false",
            "default.replication.factor": str(rf),
            "min.insync.replicas": str(c.min_insync_replicas),
            "offsets.topic.replication.factor": str(rf),
            "offsets.topic.num.partitions": "12",
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": str(c.min_insync_replicas),
            "share.coordinator.state.topic.replication.factor": str(rf),
            "share.coordinator.state.topic.min.isr": str(c.min_insync_replicas),
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            # A SIGKILLed node is fenced after this long; acks=all writes to partitions that
            # still list it in their ISR wait until then.
            "broker.session.timeout.ms": "6000",
            "broker.heartbeat.interval.ms": "1000",
            "num.partitions": "1",
            "log.retention.hours": "168",
        }

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        props = "".join(f"{k}={v}\n" for k, v in self.server_properties().items())
        (self.dir / "server.properties").write_text(props)
        (self.dir / "log4j2.properties").write_text(_LOG4J2)
        if (self.data_dir / "meta.properties").exists():
            return
        result = subprocess.run(
            [
                _java(),
                "-Xmx256m",
                "-cp",
                self.cluster.classpath(),
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self.cluster.cluster_id(),
                "-c",
                str(self.dir / "server.properties"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")

    def process_spec(self) -> ProcessSpec:
        heap = f"{self.cluster.heap_mb}m"
        return ProcessSpec(
            argv=[
                _java(),
                f"-Xms{heap}",
                f"-Xmx{heap}",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-XX:ErrorFile={self.dir / 'hs_err_pid%p.log'}",
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.dir / 'logs'}",
                "-cp",
                self.cluster.classpath(),
                "kafka.Kafka",
                str(self.dir / "server.properties"),
            ],
            log_path=self.log_path,
        )

    async def probe(self) -> None:
        await asyncio.to_thread(self._probe_blocking)

    def _probe_blocking(self) -> None:
        # log_level 2: librdkafka would otherwise print every refused connection while we poll.
        admin = AdminClient(
            {"bootstrap.servers": self.address, "socket.timeout.ms": 2000, "log_level": 2}
        )
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception as exc:  # librdkafka raises KafkaException with varying payloads
            raise ComponentNotReadyError(f"no metadata: {exc}") from exc
        if self.node_id not in metadata.brokers:
            raise ComponentNotReadyError(f"node {self.node_id} not yet registered with the cluster")
