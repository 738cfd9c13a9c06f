"""What a local stack is made of: its components, their ports and environments, the links its
fault proxy routes. Pure description: building a shape starts, reads and writes nothing (the
stack's secrets are created on first use, when an environment asks for them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from realchat.config import Settings, to_environment
from realchat.stack.component import Component
from realchat.stack.faultproxy import FaultProxy, Link
from realchat.stack.haproxy import Backend, Balancer
from realchat.stack.kafka import KafkaCluster, KafkaNode
from realchat.stack.postgres import Postgres
from realchat.stack.prometheus import Prometheus
from realchat.stack.redis import Redis
from realchat.stack.secrets import StackSecrets
from realchat.stack.service import Service

Reporter = Callable[[str], None]


def quiet(_: str) -> None:
    """A reporter that says nothing."""
    pass


INFRASTRUCTURE = frozenset({"postgres", "redis", "kafka"})
SERVICES = frozenset({"auth-service", "chat", "outbox-publisher", "presence", "gateway"})
#: Runs only where a push webhook is configured (`NotifierSettings.webhook_url`).
NOTIFIER = frozenset({"notifier"})
#: Started last, when `StackSettings.prometheus` is on.
OBSERVABILITY = frozenset({"prometheus"})
EVERYTHING = INFRASTRUCTURE | SERVICES | NOTIFIER | OBSERVABILITY

#: The links a stack with `fault_links` routes through its fault proxy: the chat service to
#: PostgreSQL, the gateways to Kafka, the outbox publishers to Kafka (Kafka listener names).
CHAT_DATABASE_LINK = "chat-postgres"
GATEWAYS_LINK = "GATEWAYS"
PUBLISHERS_LINK = "PUBLISHERS"
KAFKA_LINKS = (GATEWAYS_LINK, PUBLISHERS_LINK)


def kafka_links(listener: str) -> str:
    """The name prefix of a Kafka listener's proxy links (one link per node: `<prefix>-<n>`)."""
    return f"{listener.lower()}-kafka"


#: What the stack is made of, beyond the settings' defaults: recorded at `up` in stack.json so
#: later commands (`status`, `start`, `kill`, `down`) see the same components without the flags.
SHAPE_FIELDS = ("kafka_nodes", "gateways", "publishers")

#: Prometheus job of each service command: the compose service's name (dashboards use the jobs).
_JOBS = {"auth-service": "auth", "chat-service": "chat"}


#: Settings sections handed down to the services the stack starts.
_SERVICE_SECTIONS = (
    "chat",
    "outbox",
    "auth",
    "gateway",
    "presence",
    "notifier",
    "http",
    "logging",
    "tracing",
    "faults",
)


class StackShape:
    """The stack described by `settings`, limited to the `include`d kinds of component."""

    def __init__(
        self,
        app_settings: Settings,
        *,
        include: Iterable[str] = EVERYTHING,
        report: Reporter = quiet,
    ) -> None:
        settings = app_settings.stack
        self.app_settings = app_settings
        self.settings = settings
        self.kafka_settings = app_settings.kafka
        self.include = frozenset(include)
        self.report = report
        self.state_dir = settings.state_dir.resolve()
        self.secrets = StackSecrets(self.state_dir)
        self.postgres = Postgres(
            state_dir=self.state_dir,
            host=settings.host,
            port=settings.postgres_port,
            database=settings.database_name,
            report=report,
        )
        self.redis = Redis(state_dir=self.state_dir, host=settings.host, port=settings.redis_port)
        self.kafka = KafkaCluster(
            state_dir=self.state_dir,
            libs_dir=settings.kafka_libs_dir,
            host=settings.host,
            base_port=settings.kafka_port,
            nodes=settings.kafka_nodes,
            heap_mb=settings.kafka_heap_mb,
            links=KAFKA_LINKS if settings.fault_links else (),
        )

    # -- components -------------------------------------------------------------

    def components(self) -> list[Component]:
        """In start order; stopping goes in reverse."""
        found: list[Component] = []
        if "postgres" in self.include:
            found.append(self.postgres)
        if "redis" in self.include:
            found.append(self.redis)
        if "kafka" in self.include:
            found.extend(self.kafka.all_nodes())
        if (fault_proxy := self.fault_proxy()) is not None:
            found.append(fault_proxy)
        found.extend(self.services())
        if (balancer := self.balancer()) is not None:
            found.append(balancer)
        if (prometheus := self.prometheus()) is not None:
            found.append(prometheus)
        return found

    def _service(
        self, name: str, address: str, ops_port: int, command: str | None = None, **env: str
    ) -> Service:
        """One RealChat process: `realchat <command>` with this stack's environment plus `env`."""
        return Service(
            name=name,
            command=(command or name,),
            state_dir=self.state_dir,
            address=address,
            ops_url=f"http://{self.app_settings.ops_host}:{ops_port}",
            env={**self.environment(), **env},
        )

    def services(self) -> list[Service]:
        """RealChat's own processes, started after the infrastructure is ready."""
        app = self.app_settings
        host = app.ops_host
        service = self._service
        known = {
            "auth-service": service(
                "auth-service",
                f"{app.auth.http_host}:{app.auth.http_port}",
                app.auth.ops_port,
                REALCHAT_AUTH__PRIVATE_KEY_FILE=str(self.signing_keys[0]),
            ),
            "chat": service(
                "chat",
                f"{app.chat.grpc_host}:{app.chat.grpc_port}",
                app.chat.ops_port,
                command="chat-service",
                **self._through_link(database=CHAT_DATABASE_LINK),
            ),
            "presence": service(
                "presence", f"{host}:{app.presence.ops_port}", app.presence.ops_port
            ),
        }
        if app.notifier.webhook_url is not None:
            known["notifier"] = service(
                "notifier", f"{host}:{app.notifier.ops_port}", app.notifier.ops_port
            )
        found = [s for name, s in known.items() if name in self.include]
        if "outbox-publisher" in self.include:
            found.extend(
                service(
                    name,
                    f"{host}:{port}",
                    port,
                    command="outbox-publisher",
                    REALCHAT_OUTBOX__OPS_PORT=str(port),
                    **self._through_link(kafka=PUBLISHERS_LINK),
                )
                for name, port in self._publishers()
            )
        if "gateway" in self.include:
            found.extend(
                service(
                    name,
                    f"{app.http.host}:{b.port}",
                    b.ops_port,
                    command="gateway",
                    REALCHAT_HTTP__PORT=str(b.port),
                    REALCHAT_GATEWAY__OPS_PORT=str(b.ops_port),
                    REALCHAT_GATEWAY__INSTANCE_ID=instance,
                    **self._through_link(kafka=GATEWAYS_LINK),
                )
                for name, instance, b in self._gateway_backends()
            )
        return found

    def _publishers(self) -> list[tuple[str, int]]:
        """(component name, ops port) of each outbox publisher replica."""
        count = self.settings.publishers
        if count == 1:
            return [("outbox-publisher", self.app_settings.outbox.ops_port)]
        return [
            (f"outbox-publisher-{n}", self.settings.publisher_ops_port + n)
            for n in range(1, count + 1)
        ]

    def _gateway_backends(self) -> list[tuple[str, str, Backend]]:
        """(component name, instance id, address) of each gateway instance."""
        app = self.app_settings
        count = self.settings.gateways
        if count == 1:
            only = Backend("gateway", app.http.host, app.http.port, app.gateway.ops_port)
            return [("gateway", app.gateway.instance_id, only)]
        return [
            (
                f"gateway-{n}",
                str(n),
                Backend(
                    f"gateway-{n}",
                    app.http.host,
                    self.settings.gateway_port + n,
                    app.gateway.ops_port + n - 1,
                ),
            )
            for n in range(1, count + 1)
        ]

    def fault_proxy(self) -> FaultProxy | None:
        """The proxy on the links the failure tests fault, when `fault_links` is on."""
        if not self.settings.fault_links:
            return None
        settings = self.settings
        links = [Link(CHAT_DATABASE_LINK, settings.fault_proxy_port + 1, settings.postgres_port)]
        links += [
            Link(
                f"{kafka_links(link)}-{node}",
                self.kafka.link_proxy_port(node, link),
                self.kafka.link_port(node, link),
            )
            for link in self.kafka.links
            for node in range(1, self.kafka.nodes + 1)
        ]
        return FaultProxy(self.state_dir, settings.host, settings.fault_proxy_port, links)

    def _through_link(self, database: str = "", kafka: str = "") -> dict[str, str]:
        """A service's environment that sends its PostgreSQL or Kafka traffic through a fault
        proxy link (nothing when the stack has none)."""
        if not self.settings.fault_links:
            return {}
        env = {}
        if database:
            env["REALCHAT_DATABASE__URL"] = self.postgres.dsn(
                port=self.settings.fault_proxy_port + 1
            )
        if kafka:
            env["REALCHAT_KAFKA__BOOTSTRAP_SERVERS"] = self.kafka.link_bootstrap_servers(kafka)
        return env

    def balancer(self) -> Balancer | None:
        """HAProxy on the public entrypoint when several gateways run."""
        if "gateway" not in self.include or self.settings.gateways == 1:
            return None
        http = self.app_settings.http
        backends = [b for _, _, b in self._gateway_backends()]
        return Balancer(self.state_dir, http.host, http.port, backends)

    def prometheus(self) -> Prometheus | None:
        """Prometheus scraping every service's ops endpoint, when the settings ask for it."""
        if "prometheus" not in self.include or not self.settings.prometheus:
            return None
        targets: dict[str, list[str]] = {}
        for service in self.services():
            job = _JOBS.get(service.command[0], service.command[0])
            targets.setdefault(job, []).append(service.ops_url.removeprefix("http://"))
        return Prometheus(
            state_dir=self.state_dir,
            host=self.settings.host,
            port=self.settings.prometheus_port,
            targets=targets,
            scrape_interval_s=self.settings.prometheus_scrape_interval_s,
        )

    def component(self, name: str) -> Component:
        for component in self.components():
            if component.name == name:
                return component
        known = ", ".join(c.name for c in self.components())
        raise KeyError(f"no component {name!r} in this stack (known: {known})")

    def kafka_node(self, node_id: int) -> KafkaNode:
        return self.kafka.node(node_id)

    @property
    def signing_keys(self) -> tuple[Path, Path]:
        """The auth service's token key pair (private, public), generated on first use."""
        return self.secrets.signing_keys

    def environment(self) -> dict[str, str]:
        """What a RealChat process needs to reach this stack (`REALCHAT_*` variables), plus
        every service setting given explicitly to this stack."""
        env = to_environment(self.app_settings, _SERVICE_SECTIONS)
        if "postgres" in self.include:
            env["REALCHAT_DATABASE__URL"] = self.postgres.dsn()
        if "redis" in self.include:
            env["REALCHAT_REDIS__URL"] = self.redis.url
        if "kafka" in self.include:
            env["REALCHAT_KAFKA__BOOTSTRAP_SERVERS"] = self.kafka.bootstrap_servers
            env["REALCHAT_KAFKA__REPLICATION_FACTOR"] = str(self.kafka.replication_factor)
            env["REALCHAT_KAFKA__MIN_INSYNC_REPLICAS"] = str(self.kafka.min_insync_replicas)
            env["REALCHAT_KAFKA__PARTITIONS"] = str(self.kafka_settings.partitions)
        env["REALCHAT_CHAT__INTERNAL_TOKEN"] = self.internal_token
        chat = self.app_settings.chat
        env["REALCHAT_CHAT__GRPC_HOST"] = chat.grpc_host
        env["REALCHAT_CHAT__GRPC_PORT"] = str(chat.grpc_port)
        env["REALCHAT_CHAT__OPS_PORT"] = str(chat.ops_port)
        env["REALCHAT_OUTBOX__OPS_PORT"] = str(self.app_settings.outbox.ops_port)
        env["REALCHAT_PRESENCE__OPS_PORT"] = str(self.app_settings.presence.ops_port)
        if self.include & SERVICES:
            auth = self.app_settings.auth
            env["REALCHAT_AUTH__PUBLIC_KEY_FILE"] = str(self.signing_keys[1])
            env["REALCHAT_AUTH__URL"] = f"http://{auth.http_host}:{auth.http_port}"
            env["REALCHAT_AUTH__HTTP_PORT"] = str(auth.http_port)
            env["REALCHAT_AUTH__OPS_PORT"] = str(auth.ops_port)
            env["REALCHAT_HTTP__HOST"] = self.app_settings.http.host
            env["REALCHAT_HTTP__PORT"] = str(self.app_settings.http.port)
            env["REALCHAT_GATEWAY__OPS_PORT"] = str(self.app_settings.gateway.ops_port)
        return env

    @property
    def internal_token(self) -> str:
        """The credential trusted RealChat processes present to the chat service."""
        return self.secrets.internal_token

    @property
    def counts(self) -> dict[str, int]:
        """The numbers `up` records in stack.json (`SHAPE_FIELDS`)."""
        return {name: int(getattr(self.settings, name)) for name in SHAPE_FIELDS}
