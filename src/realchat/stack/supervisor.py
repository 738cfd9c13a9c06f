"""Start, watch and stop the local stack its shape describes, recording what runs in its state.

Components start together and are waited on through real readiness probes (a SQL query, a PING,
broker metadata), never sleeps. Provisioning (database, migrations, topics) runs once they are
ready. Stopping goes in reverse order, each component with its own clean-shutdown signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from realchat.bus.admin import ensure_topics, realchat_topics
from realchat.stack import process
from realchat.stack.component import Component, ComponentNotReadyError
from realchat.stack.haproxy import Balancer
from realchat.stack.kafka import KafkaNode
from realchat.stack.service import Service
from realchat.stack.shape import StackShape
from realchat.stack.state import STATE_ENTRIES, RunningComponent, StackState
from realchat.storage.migrations import migrate_database


class StackError(RuntimeError):
    """A component failed to start or become ready; the message carries its log tail."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    address: str
    running: bool
    healthy: bool
    detail: str
    log: str


class Stack(StackShape):
    """The supervisor of the stack its shape describes: the children this process started, the
    state file it keeps, and every lifecycle command (`up`, `down`, `kill`, `start`, `status`)."""

    @functools.cached_property
    def state(self) -> StackState:
        return StackState(self.state_dir, self.counts)

    @functools.cached_property
    def _children(self) -> dict[str, subprocess.Popen[bytes]]:
        """Handles of the children this process started, kept so they are reaped, not leaked."""
        return {}

    @property
    def state_file(self) -> Path:
        return self.state.file

    def running_pid(self, name: str) -> int | None:
        return self.state.running_pid(name)

    def any_running(self) -> bool:
        """Whether any process this stack recorded still runs."""
        return self.state.any_running()

    # -- lifecycle -------------------------------------------------------------------------------

    async def up(self) -> None:
        """Bring every component to ready, then provision; reuse components already running."""
        started = time.monotonic()
        self.state.remember_shape()
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
            self.state.record(component, pid)
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
        running = self.state.read()
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
        for name, entry in self.state.read().items():
            if process.is_alive(entry.pid):
                await asyncio.to_thread(process.stop, entry.pid)
            self.report(f"{name:<10} stopped")
        self.state.remove()

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
        self.state.record_exit(name, child.pid, ended)
        return ended

    def _forget(self, component: Component) -> None:
        child = self._children.pop(component.name, None)
        if child is not None:
            child.wait(timeout=10)
        self.state.record(component, None)

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
        running = self.state.read()
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
            for name, entry in self.state.read().items():
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
