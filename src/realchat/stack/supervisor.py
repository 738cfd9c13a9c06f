"""Start, watch and stop the local stack; remember what runs in `<state_dir>/stack.json`.

Components start together and are waited on through real readiness probes (a SQL query, a PING,
broker metadata), never sleeps. Provisioning (database, migrations, topics) runs once they are
ready. Stopping goes in reverse order, each component with its own clean-shutdown signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from confluent_kafka.admin import AdminClient

from realchat.auth.keys import generate_keypair
from realchat.bus.admin import ensure_topics, realchat_topics
from realchat.config import Settings, to_environment
from realchat.stack import process
from realchat.stack.component import Component, ComponentNotReadyError
from realchat.stack.faultproxy import FaultProxy, Link
from realchat.stack.haproxy import Backend, Balancer
from realchat.stack.kafka import KafkaCluster, KafkaNode
from realchat.stack.postgres import FINGERPRINT_FILE, Postgres
from realchat.stack.prometheus import Prometheus
from realchat.stack.redis import Redis
from realchat.stack.secrets import local_secret
from realchat.stack.service import Service
from realchat.storage.migrations import migrate_database

Reporter = Callable[[str], None]

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

#: Everything a stack keeps in its state dir (what `reset` deletes; nothing else is touched).
STATE_ENTRIES = (
    "postgres",
    FINGERPRINT_FILE,
    "redis",
    "kafka",
    "prometheus",
    "haproxy",
    "fault-proxy",
    "logs",
    "secrets",
    "stack.json",
    "stack.tmp",
)

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


class StackError(RuntimeError):
    """A component failed to start or become ready; the message carries its log tail."""


@dataclass(frozen=True)
class RunningComponent:
    name: str
    pid: int
    address: str
    log: str
    #: How the process ended (`describe_exit`), once the supervisor that started it reaped it.
    exit: str | None = None


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    address: str
    running: bool
    healthy: bool
    detail: str
    log: str


def _quiet(_: str) -> None:
    pass


def saved_shape(state_dir: Path) -> dict[str, int]:
    """The shape (Kafka nodes, gateways, publishers) the stack in `state_dir` was brought up
    with, while its stack.json exists (`down` deletes it); empty if none is recorded."""
    try:
        raw = json.loads((state_dir / "stack.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    shape = raw.get("shape") or {}
    return {name: int(shape[name]) for name in SHAPE_FIELDS if name in shape}


class Stack:
    """The stack described by `settings`, limited to the `include`d kinds of component."""

    def __init__(
        self,
        app_settings: Settings,
        *,
        include: Iterable[str] = EVERYTHING,
        report: Reporter = _quiet,
    ) -> None:
        settings = app_settings.stack
        self.app_settings = app_settings
        self.settings = settings
        self.kafka_settings = app_settings.kafka
        self.include = frozenset(include)
        self.report = report
        #: Handles of the children this process started, kept so they are reaped, not leaked.
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self.state_dir = settings.state_dir.resolve()
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

    # -- what the stack is made of -------------------------------------------------------------

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

    def services(self) -> list[Service]:
        """RealChat's own processes, started after the infrastructure is ready."""
        app = self.app_settings
        host = app.ops_host

        def service(
            name: str, address: str, ops_port: int, command: str | None = None, **env: str
        ) -> Service:
            return Service(
                name=name,
                command=(command or name,),
                state_dir=self.state_dir,
                address=address,
                ops_url=f"http://{host}:{ops_port}",
                env={**self.environment(), **env},
            )

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
        return generate_keypair(self.state_dir / "secrets")

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
        return local_secret(self.state_dir, "chat-internal-token")

    # -- state file ------------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    def _read_state(self) -> dict[str, RunningComponent]:
        try:
            raw = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        return {name: RunningComponent(**entry) for name, entry in raw["components"].items()}

    @property
    def shape(self) -> dict[str, int]:
        return {name: int(getattr(self.settings, name)) for name in SHAPE_FIELDS}

    def _write_state(self, running: dict[str, RunningComponent]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        payload = {
            "shape": self.shape,
            "components": {name: asdict(rc) for name, rc in running.items()},
        }
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, self.state_file)

    def _record(self, component: Component, pid: int | None) -> None:
        running = self._read_state()
        if pid is None:
            running.pop(component.name, None)
        else:
            running[component.name] = RunningComponent(
                component.name, pid, component.address, str(component.log_path)
            )
        self._write_state(running)

    def running_pid(self, name: str) -> int | None:
        entry = self._read_state().get(name)
        if entry is not None and process.is_alive(entry.pid):
            return entry.pid
        return None

    def any_running(self) -> bool:
        """Whether any process this stack recorded still runs."""
        return any(process.is_alive(entry.pid) for entry in self._read_state().values())

    # -- lifecycle -------------------------------------------------------------------------------

    async def up(self) -> None:
        """Bring every component to ready, then provision; reuse components already running."""
        started = time.monotonic()
        self._write_state(self._read_state())  # remember the shape before anything starts
        services = self.services()
        balancer = self.balancer()
        prometheus = self.prometheus()
        infrastructure = [
            c for c in self.components() if c not in services and c not in (balancer, prometheus)
        ]
        for component in infrastructure:
            await asyncio.to_thread(component.prepare)
        await asyncio.gather(*(self._start(c, started) for c in infrastructure))
        await self.provision()
        await asyncio.gather(*(self._start(s, started) for s in services))
        if (balancer := self.balancer()) is not None:
            await asyncio.to_thread(balancer.prepare)
            await self._start(balancer, started)
        if prometheus is not None:
            await asyncio.to_thread(prometheus.prepare)
            await self._start(prometheus, started)
        self.report(f"stack ready in {time.monotonic() - started:.1f}s")

    async def _start(self, component: Component, started: float) -> None:
        pid = self.running_pid(component.name)
        if pid is not None:
            self.report(f"{component.name:<10} already running (pid {pid})")
        else:
            child = process.spawn(component.process_spec())
            self._children[component.name] = child
            pid = child.pid
            self._record(component, pid)
            self.report(f"{component.name:<10} starting (pid {pid}, log {component.log_path})")
        await self._wait_ready(component, pid)
        elapsed = time.monotonic() - started
        self.report(f"{component.name:<10} ready at {component.address} ({elapsed:.1f}s)")

    async def _wait_ready(self, component: Component, pid: int) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout_s
        last = "not probed yet"
        while time.monotonic() < deadline:
            if not process.is_alive(pid):
                ended = self._reap(component.name) or "exit status unknown"
                raise StackError(
                    f"{component.name} exited while starting ({ended}); "
                    f"{process.failure_report(component.log_path)}"
                )
            try:
                await component.probe()
            except ComponentNotReadyError as exc:
                last = str(exc)
            else:
                return
            await asyncio.sleep(0.25)
        raise StackError(
            f"{component.name} not ready after {self.settings.ready_timeout_s:.0f}s ({last}); "
            f"{process.failure_report(component.log_path)}"
        )

    async def provision(self) -> None:
        """Database, schema and topics: idempotent, run after every start."""
        if "postgres" in self.include:
            await self.postgres.ensure_database()
            applied = await migrate_database(self.postgres.dsn())
            if applied:
                names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
                self.report(f"migrations applied: {names}")
        if "kafka" in self.include:
            await asyncio.to_thread(self._ensure_topics)

    def _ensure_topics(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.kafka.bootstrap_servers})
        specs = realchat_topics(
            self.kafka_settings.partitions,
            self.kafka.replication_factor,
            self.kafka.min_insync_replicas,
        )
        ensure_topics(admin, specs)
        self.report(f"topics ready: {', '.join(s.name for s in specs)}")

    async def down(self) -> None:
        """Stop everything this stack started, in reverse order; Kafka nodes together."""
        running = self._read_state()
        components = {c.name: c for c in self.components()}
        names = [n for n in reversed(list(components)) if n in running]
        service_names = [n for n in names if isinstance(components[n], Service | Balancer)]
        kafka_names = [n for n in names if isinstance(components[n], KafkaNode)]
        others = [n for n in names if n not in kafka_names and n not in service_names]
        if service_names:
            await asyncio.gather(*(self.stop_component(n) for n in service_names))
        if kafka_names:
            await asyncio.gather(*(self.stop_component(n) for n in kafka_names))
        for name in others:
            await self.stop_component(name)
        # Entries of components no longer configured (e.g. a 3-node run followed by a 1-node
        # config) are stopped too: nothing may be left behind.
        for name, entry in self._read_state().items():
            if process.is_alive(entry.pid):
                await asyncio.to_thread(process.stop, entry.pid)
            self.report(f"{name:<10} stopped")
        self.state_file.unlink(missing_ok=True)

    async def reset(self) -> None:
        """Stop everything, then delete all data of this stack: its state dir's contents and
        PostgreSQL's data, also when that lives in the fallback dir outside the state dir."""
        await self.down()
        removed = self.postgres.remove_data()
        if removed is not None:
            self.report(f"postgres   data deleted ({removed})")
        for name in STATE_ENTRIES:
            path = self.state_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.state_dir.rmdir()  # only when nothing else was kept there
        self.report(f"stack in {self.state_dir} reset: nothing running, no data left")

    async def stop_component(self, name: str) -> None:
        component = self.component(name)
        pid = self.running_pid(name)
        if pid is not None:
            clean = await asyncio.to_thread(
                process.stop, pid, sig=component.stop_signal, grace_s=component.stop_grace_s
            )
            self.report(f"{name:<10} stopped" + ("" if clean else " (killed after grace)"))
        self._forget(component)

    def reap_ended(self) -> dict[str, str]:
        """The children this supervisor started that ended since the last call, with how (a
        component stopped or killed through this `Stack` is not among them)."""
        return {name: how for name in list(self._children) if (how := self._reap(name))}

    def _reap(self, name: str) -> str | None:
        """If the child this supervisor started for `name` has ended: reap it (no zombie is
        left behind), record how it ended in the state file and return that; else None."""
        child = self._children.get(name)
        if child is None or child.poll() is None:
            return None
        del self._children[name]
        ended = process.describe_exit(child.returncode)
        running = self._read_state()
        entry = running.get(name)
        if entry is not None and entry.pid == child.pid:
            running[name] = replace(entry, exit=ended)
            self._write_state(running)
        return ended

    def _forget(self, component: Component) -> None:
        child = self._children.pop(component.name, None)
        if child is not None:
            child.wait(timeout=10)
        self._record(component, None)

    async def kill_component(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Failure injection: signal the component and wait until it is gone."""
        pid = self.running_pid(name)
        if pid is None:
            raise StackError(f"{name} is not running")
        process.kill(pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            await asyncio.to_thread(process.wait_gone, pid, 30.0)
            self._forget(self.component(name))
        self.report(f"{name:<10} signalled with {sig.name}")

    async def start_component(self, name: str) -> None:
        """(Re)start one component and wait until it is ready again."""
        component = self.component(name)
        await asyncio.to_thread(component.prepare)
        await self._start(component, time.monotonic())

    async def status(self) -> list[ComponentStatus]:
        running = self._read_state()
        return list(
            await asyncio.gather(*(self._status(c, running.get(c.name)) for c in self.components()))
        )

    async def _status(
        self, component: Component, entry: RunningComponent | None
    ) -> ComponentStatus:
        pid = entry.pid if entry else None
        alive = pid is not None and process.is_alive(pid)
        healthy = False
        detail = f"not running: {entry.exit}" if entry and entry.exit else "not running"
        if alive:
            try:
                await asyncio.wait_for(component.probe(), timeout=5)
            except (ComponentNotReadyError, TimeoutError) as exc:
                detail = str(exc) or "probe timed out"
            else:
                healthy, detail = True, "ok"
        return ComponentStatus(
            name=component.name,
            pid=pid if alive else None,
            address=component.address,
            running=alive,
            healthy=healthy,
            detail=detail,
            log=str(component.log_path),
        )

    async def watch(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Until `stop` is set, report components that exit on their own, with their exit
        status or signal (they are not restarted: a failure test may have killed them on
        purpose; `realchat stack start NAME` brings one back)."""
        reported: set[tuple[str, int]] = set()
        while not stop.is_set():
            ended = self.reap_ended()
            for name, entry in self._read_state().items():
                if (name, entry.pid) in reported or process.is_alive(entry.pid):
                    continue
                reported.add((name, entry.pid))
                how = ended.get(name) or entry.exit or "exit status unknown: started elsewhere"
                self.report(
                    f"{name:<10} exited unexpectedly ({how}); "
                    f"{process.failure_report(Path(entry.log), 10)}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
