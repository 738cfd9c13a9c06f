"""`realchat loadtest`: many WebSocket clients against a running stack, through the public API only.

The coordinator (this module) creates users (several devices each) and conversations (a mix of
1:1 and groups) over REST, splits the connections over worker processes
(`realchat.loadtest.worker`, each on its own 127.0.0.x source address), drives phases (an
open-loop send rate for some seconds, with slow clients and reconnect churn), samples the server
side (`sampler.py`) once a second, and after each phase has every client sync and checks it holds
every message of its conversations. Reports: JSON, HTML (inline SVG) and a text summary
(`report.py`).

Scenarios: `plan` (10k connections, 1,000 msg/s, 20 % slow, 10 %/min churn), `ramp` (rising
rates until p95 >= 100 ms or a loss), `idle` (connections only: memory per connection at the
gateways), `soak` (the plan's load for an hour, judged on flat RSS, lag and error rate), `smoke`
(a few hundred connections for ~20 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
from hdrh.histogram import HdrHistogram
from yarl import URL

from realchat.auth.tokens import load_issuer
from realchat.config import Settings
from realchat.filelimit import raise_file_limit
from realchat.loadtest.cost import cpu_cost, idle_rates
from realchat.loadtest.population import (
    Operator,
    Population,
    ProvisioningError,
    Shape,
    population_for,
    users_for,
)
from realchat.loadtest.report import write_reports
from realchat.loadtest.sampler import ServerSampler
from realchat.loadtest.worker import HISTOGRAMS, new_histogram
from realchat.stack.supervisor import Stack

Reporter = Callable[[str], None]
DEFAULT_OUTPUT_DIR = Path("bench/results")


class LoadTestError(ProvisioningError):
    """The load test could not run; the message says why."""


@dataclass(frozen=True)
class Phase:
    rate: float
    seconds: float
    churn_per_min: float


@dataclass
class LoadConfig:
    base_url: str = "http://127.0.0.1:8080"
    scenario: str = "plan"
    connections: int = 10_000
    devices_per_user: int = 4
    conversations_per_user: int = 3
    #: Share of conversations that are groups (the rest are 1:1).
    group_share: float = 0.2
    group_size: int = 5
    rate: float = 1000.0
    duration_s: float = 120.0
    #: Share of connections that read slowly (half) or stop reading for a while (half).
    slow_share: float = 0.2
    slow_read_delay_s: float = 0.5
    stall_s: float = 10.0
    stall_every_s: float = 30.0
    #: Share of all connections that close and reconnect per minute.
    churn_per_min: float = 0.1
    workers: int = 2
    register_concurrency: int = 8
    #: Sign up and log in every user through the API even when the stack's database and
    #: signing key are at hand (then users are provisioned in bulk and reused across runs).
    register_over_rest: bool = False
    max_pending_per_connection: int = 20
    #: Ramp: first rate, step, seconds per step, highest rate tried.
    ramp_start: float = 100.0
    ramp_step: float = 100.0
    ramp_step_s: float = 30.0
    ramp_max: float = 2000.0
    ramp_p95_ms: float = 100.0
    idle_settle_s: float = 15.0
    #: Seconds of no traffic before the first phase: each component's idle CPU rate, taken out
    #: of the CPU per message (0: not measured, per-message figures then include idle work).
    idle_cpu_s: float = 5.0
    seed: int = 1
    #: WebSocket entrypoints: worker n connects to ws_urls[n % len] (default: base_url). Direct
    #: gateway addresses spread clients as HAProxy would, without its file-descriptor ceiling.
    ws_urls: list[str] = field(default_factory=list)
    output_dir: Path = DEFAULT_OUTPUT_DIR
    name: str = ""
    notes: list[str] = field(default_factory=list)


SCENARIOS: dict[str, dict[str, Any]] = {
    "plan": {},
    "ramp": {"connections": 2000},
    "idle": {"rate": 0.0, "slow_share": 0.0, "churn_per_min": 0.0, "idle_cpu_s": 0.0},
    "soak": {"duration_s": 3600.0, "rate": 300.0},
    "smoke": {
        "connections": 300,
        "devices_per_user": 25,
        "conversations_per_user": 2,
        "group_size": 3,
        "rate": 10.0,
        "duration_s": 20.0,
        "churn_per_min": 0.3,
        "workers": 1,
        "register_concurrency": 4,
        "slow_read_delay_s": 0.2,
        "stall_s": 5.0,
        "stall_every_s": 10.0,
    },
}


def scenario_config(scenario: str, **overrides: Any) -> LoadConfig:
    values = {**SCENARIOS[scenario], **{k: v for k, v in overrides.items() if v is not None}}
    return replace(LoadConfig(scenario=scenario), **values)


# -- workers ---------------------------------------------------------------------------------


@dataclass
class WorkerHandle:
    index: int
    process: asyncio.subprocess.Process
    replies: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    last_tick: dict[str, Any] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def spawn(cls, index: int, module: str, limit: int) -> WorkerHandle:
        """Worker `index`: `python -m <module>`, JSON lines in on stdin and out on stdout
        (`limit`: the longest line it may write)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=limit,
        )
        return cls(index, process)

    async def command(self, command: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(msgspec.json.encode(command) + b"\n")
        await self.process.stdin.drain()

    async def reply(self, kind: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoadTestError(f"worker {self.index}: no {kind} within {timeout_s:.0f} s")
            try:
                record = await asyncio.wait_for(self.replies.get(), left)
            except TimeoutError:
                continue
            if record.get("type") == kind:
                return record
            if record.get("type") == "exited":
                raise LoadTestError(f"worker {self.index} exited before {kind}")


class Aggregate:
    """Worker ticks -> a timeline (one point a second) and totals per phase."""

    def __init__(self) -> None:
        self.interval = {name: new_histogram() for name in HISTOGRAMS}
        self.phase = {name: new_histogram() for name in HISTOGRAMS}
        self.run = {name: new_histogram() for name in HISTOGRAMS}
        self.workers: dict[int, dict[str, Any]] = {}
        self.timeline: list[dict[str, Any]] = []
        self._previous: dict[str, float] = {}
        self.started = time.time()
        self.phase_name = "connect"

    def on_tick(self, tick: dict[str, Any]) -> None:
        self.workers[int(tick["worker"])] = tick
        for name, encoded in tick.get("hist", {}).items():
            if encoded:
                for target in (self.interval, self.phase, self.run):
                    target[name].decode_and_add(encoded)

    def totals(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        errors: dict[str, int] = {}
        disconnects: dict[str, int] = {}
        for tick in self.workers.values():
            for key, target in (
                ("counts", counts),
                ("errors", errors),
                ("disconnects", disconnects),
            ):
                for name, value in tick.get(key, {}).items():
                    target[name] = target.get(name, 0) + int(value)
        return {
            "counts": counts,
            "errors": errors,
            "disconnects": disconnects,
            "connected": sum(int(t.get("connected", 0)) for t in self.workers.values()),
            "pending": sum(int(t.get("pending", 0)) for t in self.workers.values()),
            "seq_conflicts": sum(int(t.get("seq_conflicts", 0)) for t in self.workers.values()),
            "app_duplicates": sum(int(t.get("app_duplicates", 0)) for t in self.workers.values()),
            "loop_lag_ms": max(
                (float(t.get("loop_lag_ms", 0)) for t in self.workers.values()), default=0.0
            ),
        }

    def point(self, server: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        totals = self.totals()
        counts = totals["counts"]
        elapsed = now - self._previous.get("t", self.started)
        rates = {}
        for key in ("sent", "send_ok", "delivered", "reconnects"):
            value = float(counts.get(key, 0))
            rates[f"{key}_per_s"] = round((value - self._previous.get(key, 0.0)) / elapsed, 1)
            self._previous[key] = value
        self._previous["t"] = now
        point = {
            "t": round(now - self.started, 1),
            "phase": self.phase_name,
            "connected": totals["connected"],
            "pending_sends": totals["pending"],
            "worker_loop_lag_ms": totals["loop_lag_ms"],
            **rates,
            "latency_ms": summarize(self.interval["live"]),
            "server": server,
        }
        for hist in self.interval.values():
            hist.reset()
        self.timeline.append(point)
        return point


def summarize(hist: HdrHistogram) -> dict[str, Any]:
    if hist.get_total_count() == 0:
        return {"count": 0}
    return {
        "count": hist.get_total_count(),
        "p50": round(hist.get_value_at_percentile(50) / 1000, 2),
        "p95": round(hist.get_value_at_percentile(95) / 1000, 2),
        "p99": round(hist.get_value_at_percentile(99) / 1000, 2),
        "max": round(hist.get_max_value() / 1000, 2),
        "mean": round(hist.get_mean_value() / 1000, 2),
    }


async def _read_worker(handle: WorkerHandle, aggregate: Aggregate) -> None:
    assert handle.process.stdout is not None
    while line := await handle.process.stdout.readline():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("type") == "tick":
            handle.last_tick = record
            aggregate.on_tick(record)
        else:
            handle.replies.put_nowait(record)
    handle.replies.put_nowait({"type": "exited"})


async def start_workers(
    config: LoadConfig, population: Population, aggregate: Aggregate
) -> list[WorkerHandle]:
    rng = random.Random(config.seed + 1)
    users = population.users
    slow = set(rng.sample(range(config.connections), int(config.connections * config.slow_share)))
    assignments: list[list[list[str]]] = [[] for _ in range(config.workers)]
    for n in range(config.connections):
        user = n % len(users)
        kind = "normal" if n not in slow else ("slow" if n % 2 else "stall")
        assignments[n % config.workers].append([str(user), f"d{n // len(users)}", kind])
    host = URL(config.base_url).host or "127.0.0.1"
    handles = []
    for w, connections in enumerate(assignments):
        used = {c[0] for c in connections}
        worker_config = {
            "worker": w,
            "base_url": config.base_url,
            "ws_url": (config.ws_urls or [config.base_url])[w % max(1, len(config.ws_urls))],
            # Spread the source addresses: ~28k ephemeral ports per (source, destination).
            "source_ip": f"127.0.0.{2 + w}" if host == "127.0.0.1" else None,
            "slow": {
                "read_delay_s": config.slow_read_delay_s,
                "stall_s": config.stall_s,
                "stall_every_s": config.stall_every_s,
            },
            "max_pending_per_connection": config.max_pending_per_connection,
            "users": {key: users[int(key)] for key in used},
            "connections": connections,
        }
        handle = await WorkerHandle.spawn(w, "realchat.loadtest.worker", limit=1 << 30)
        handle.reader = asyncio.create_task(_read_worker(handle, aggregate))
        await handle.command(worker_config)
        handles.append(handle)
    return handles


# -- the run ---------------------------------------------------------------------------------


@dataclass
class StackView:
    """What the coordinator samples on the server side (all optional)."""

    pids: dict[str, int] = field(default_factory=dict)
    metrics_urls: dict[str, str] = field(default_factory=dict)
    dsn: str | None = None
    gateways: list[str] = field(default_factory=list)
    gateway_urls: list[str] = field(default_factory=list)
    #: The local stack's database and signing key: users provisioned in bulk and reused.
    operator: Operator | None = None


async def stack_view(stack: Stack) -> StackView:
    """What a running stack offers to sample (`realchat stack status`): pids, ops ports, DSN."""
    statuses = await stack.status()
    services = stack.services()
    view = StackView(
        pids={s.name: s.pid for s in statuses if s.pid is not None and s.running},
        metrics_urls={s.name: f"{s.ops_url}/metrics" for s in services},
        gateways=[s.name for s in services if s.name.startswith("gateway")],
        gateway_urls=[f"http://{s.address}" for s in services if s.name.startswith("gateway")],
    )
    if "postgres" in stack.include:
        with contextlib.suppress(OSError, ValueError):
            view.dsn = stack.postgres.dsn()
    if view.dsn is not None:
        auth = stack.app_settings.auth.model_copy(
            update={"private_key_file": stack.signing_keys[0]}
        )
        view.operator = Operator(view.dsn, load_issuer(auth), stack.state_dir / "loadtest")
    return view


async def _last_seqs(dsn: str | None, conversations: list[str]) -> dict[str, int] | None:
    if not dsn:
        return None
    try:
        db = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        rows = await db.fetch(
            "SELECT id::text AS id, last_seq FROM conversations WHERE id = ANY($1::uuid[])",
            conversations,
        )
        return {r["id"]: int(r["last_seq"]) for r in rows}
    finally:
        await db.close()


async def run_loadtest(config: LoadConfig, view: StackView, report: Reporter) -> dict[str, Any]:
    fd_limit = raise_file_limit()
    report(
        f"loadtest {config.scenario}: {config.connections} connections, "
        f"{config.workers} workers, open files limit {fd_limit}"
    )
    started_at = datetime.now(UTC)
    aggregate = Aggregate()
    phases = _phases(config)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        shape = Shape(
            users_for(config.connections, config.devices_per_user),
            config.conversations_per_user,
            config.group_share,
            config.group_size,
            config.seed,
        )
        operator = None if config.register_over_rest else view.operator
        population = await population_for(
            http, config.base_url, shape, operator, report, config.register_concurrency
        )
        report(
            f"setup ({population.how}): {len(population.users)} users in "
            f"{population.register_s} s, "
            f"{len(population.conversations)} conversations in {population.conversations_s} s"
        )
        sampler = ServerSampler(dict(view.pids), dict(view.metrics_urls), view.dsn)
        await sampler.start()
        baseline = await sampler.sample(http)
        handles = await start_workers(config, population, aggregate)
        for h in handles:
            sampler.pids[f"loadgen-{h.index}"] = h.process.pid
        stop_sampling = asyncio.Event()
        sampling = asyncio.create_task(
            _sample_loop(aggregate, sampler, http, stop_sampling, report)
        )
        results: list[dict[str, Any]] = []
        idle: dict[str, Any] | None = None
        idle_cpu: dict[str, float] = {}
        try:
            connect_started = time.monotonic()
            ready = [await h.reply("ready", timeout_s=600) for h in handles]
            connect_s = round(time.monotonic() - connect_started, 1)
            connected = sum(int(r["connected"]) for r in ready)
            report(f"connected {connected}/{config.connections} in {connect_s} s")
            if config.scenario == "idle":
                idle = await _idle(config, sampler, http, baseline, connected, report)
            idle_cpu = await _idle_cpu(sampler, config.idle_cpu_s, report)
            conversations = [c for u in population.users for c in u["conversations"]]
            for number, phase in enumerate(phases, 1):
                result = await _run_phase(
                    number,
                    phase,
                    config,
                    handles,
                    aggregate,
                    view,
                    sampler,
                    idle_cpu,
                    sorted(set(conversations)),
                    report,
                )
                results.append(result)
                if config.scenario == "ramp" and not result["passed"]:
                    break
            for h in handles:
                with contextlib.suppress(ConnectionError):
                    await h.command({"cmd": "exit"})
            for h in handles:
                with contextlib.suppress(LoadTestError):
                    await h.reply("done", timeout_s=120)
        finally:
            stop_sampling.set()
            await sampling
            await sampler.close()
            for h in handles:
                if h.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        h.process.kill()
                await h.process.wait()
    final = aggregate.totals()
    document = {
        "benchmark": "loadtest",
        "scenario": config.scenario,
        "name": config.name or config.scenario,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "machine": _machine(),
        "setup": {
            "users": len(population.users),
            "conversations": len(population.conversations),
            "group_conversations": sum(1 for c in population.conversations if len(c) > 2),
            "register_s": population.register_s,
            "population": population.how,
            "conversations_s": population.conversations_s,
            "connect_s": connect_s,
            "connected": connected,
            "open_files_limit": fd_limit,
        },
        "phases": results,
        "totals": final,
        "latency_ms": {name: summarize(h) for name, h in aggregate.run.items()},
        "correctness": _correctness(results, final),
        "idle": idle,
        "server_baseline": baseline,
        "idle_cpu_cores": {name: round(rate, 4) for name, rate in idle_cpu.items()},
        "asyncio_tasks": "sampled"
        if sampler.tasks_exposed
        else "not exposed: no RealChat process exports an asyncio task count",
        "timeline": aggregate.timeline,
    }
    document["saturation"] = saturation(aggregate.timeline, view.gateways)
    if config.scenario == "soak":
        document["stability"] = stability(aggregate.timeline)
    paths = write_reports(document, config.output_dir, config.name or config.scenario)
    for path in paths:
        report(f"saved {path}")
    return document


async def _idle_cpu(sampler: ServerSampler, seconds: float, report: Reporter) -> dict[str, float]:
    """Each component's CPU rate with every client connected and nothing sent."""
    if seconds <= 0:
        return {}
    report(f"measuring the idle CPU of every component for {seconds:g} s ...")
    before = sampler.cpu_seconds()
    started = time.monotonic()
    await asyncio.sleep(seconds)
    return idle_rates(before, sampler.cpu_seconds(), time.monotonic() - started)


def _phases(config: LoadConfig) -> list[Phase]:
    if config.scenario == "idle":
        return []
    if config.scenario == "ramp":
        steps = int((config.ramp_max - config.ramp_start) // config.ramp_step) + 1
        return [
            Phase(
                config.ramp_start + n * config.ramp_step, config.ramp_step_s, config.churn_per_min
            )
            for n in range(steps)
        ]
    return [Phase(config.rate, config.duration_s, config.churn_per_min)]


async def _sample_loop(
    aggregate: Aggregate,
    sampler: ServerSampler,
    http: aiohttp.ClientSession,
    stop: asyncio.Event,
    report: Reporter,
) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        server = await sampler.sample(http)
        point = aggregate.point(server)
        if len(aggregate.timeline) % 5 == 0:
            report(_progress(point))


def _progress(point: dict[str, Any]) -> str:
    lat = point["latency_ms"]
    server = point["server"]
    latency = (
        f"p50 {lat['p50']} p95 {lat['p95']} p99 {lat['p99']} max {lat['max']} ms"
        if lat.get("count")
        else "no deliveries"
    )
    return (
        f"[{point['t']:>6.0f} s {point['phase']:<10}] conn {point['connected']:>6} "
        f"sent {point['sent_per_s']:>7}/s ok {point['send_ok_per_s']:>7}/s "
        f"delivered {point['delivered_per_s']:>8}/s {latency} | "
        f"cpu {server.get('machine_cpu_pct')}% lag {server.get('kafka_lag', '-')} "
        f"outbox {server.get('outbox_pending', '-')} locks {server.get('pg_lock_waits', '-')}"
    )


async def _run_phase(
    number: int,
    phase: Phase,
    config: LoadConfig,
    handles: list[WorkerHandle],
    aggregate: Aggregate,
    view: StackView,
    sampler: ServerSampler,
    idle_cpu: dict[str, float],
    conversations: list[str],
    report: Reporter,
) -> dict[str, Any]:
    name = f"{number}@{phase.rate:g}/s"
    aggregate.phase_name = name
    for hist in aggregate.phase.values():
        hist.reset()
    before = aggregate.totals()
    report(
        f"phase {name}: {phase.rate:g} msg/s for {phase.seconds:g} s, "
        f"churn {phase.churn_per_min:.0%}/min"
    )
    share = phase.rate / len(handles)
    cpu_before = sampler.cpu_seconds()
    started = time.monotonic()
    for h in handles:
        await h.command(
            {
                "cmd": "phase",
                "rate": share,
                "seconds": phase.seconds,
                "churn_per_min": phase.churn_per_min,
            }
        )
    done = [await h.reply("phase_done", timeout_s=phase.seconds * 3 + 300) for h in handles]
    cpu_after = sampler.cpu_seconds()
    cpu_window_s = time.monotonic() - started
    sent_totals = aggregate.totals()["counts"]
    send_window_s = phase.seconds
    drained_s = round(time.monotonic() - started - phase.seconds, 1)
    expected: dict[str, int] = {}
    for d in done:
        for conversation, seq in d["acked"].items():
            expected[conversation] = max(expected.get(conversation, 0), int(seq))
    stored = await _last_seqs(view.dsn, conversations)
    if stored is not None:
        for conversation, seq in stored.items():
            expected[conversation] = max(expected.get(conversation, 0), seq)
    aggregate.phase_name = f"verify {number}"
    report(
        f"phase {name}: sends done (drained {drained_s} s after the window); "
        f"verifying {len(expected)} conversations on every client ..."
    )
    verify_started = time.monotonic()
    for h in handles:
        await h.command({"cmd": "verify", "expected": expected})
    verified = [await h.reply("verified", timeout_s=900) for h in handles]
    after = aggregate.totals()
    delta = _delta(before, after)
    latency = {n: summarize(h) for n, h in aggregate.phase.items()}
    correctness = {
        "clients": sum(v["clients"] for v in verified),
        "unverified_clients": sum(v["unverified"] for v in verified),
        "messages_checked": sum(v["messages_checked"] for v in verified),
        "lost": sum(v["lost"] for v in verified),
        "clients_with_loss": sum(v["clients_with_loss"] for v in verified),
        "loss_examples": [e for v in verified for e in v["examples"]][:5],
        "order_violations": delta["counts"].get("order_violations", 0),
        "gaps": delta["counts"].get("gaps", 0),
        "duplicate_frames_suppressed": delta["counts"].get("duplicate_frames", 0),
        "duplicates_to_application": after["app_duplicates"],
        "seq_conflicts": after["seq_conflicts"],
        "all_drained": all(d["drained"] for d in done),
        "stored_messages": sum(expected.values()),
        "last_seq_source": "database and send_ok" if stored is not None else "send_ok",
    }
    send_ok = delta["counts"].get("send_ok", 0)
    live = latency["live"]
    passed = (
        correctness["lost"] == 0
        and correctness["order_violations"] == 0
        and correctness["unverified_clients"] == 0
        and live.get("count", 0) > 0
        and live["p95"] < config.ramp_p95_ms
        and send_ok >= 0.95 * phase.rate * phase.seconds
    )
    result = {
        "phase": name,
        "target_rate": phase.rate,
        "seconds": phase.seconds,
        "churn_per_min": phase.churn_per_min,
        "sent": delta["counts"].get("sent", 0),
        "send_ok": send_ok,
        "send_skipped": delta["counts"].get("send_skipped", 0),
        "send_refused": delta["counts"].get("send_refused", 0),
        "sent_per_s": round(delta["counts"].get("sent", 0) / send_window_s, 1),
        "send_ok_per_s": round(send_ok / send_window_s, 1),
        "delivered": delta["counts"].get("delivered", 0),
        "delivered_per_s": round(delta["counts"].get("delivered", 0) / send_window_s, 1),
        "drain_s": drained_s,
        "verify_s": round(time.monotonic() - verify_started, 1),
        "reconnects": delta["counts"].get("reconnects", 0),
        "churned": delta["counts"].get("churned", 0),
        "resent": delta["counts"].get("resent", 0),
        "disconnects": delta["disconnects"],
        "errors": delta["errors"],
        "latency_ms": latency,
        "correctness": correctness,
        "passed": passed,
        # Over the send window and its drain (not the verification that follows), less what
        # the same seconds cost with the clients connected and quiet.
        "cpu_cost": cpu_cost(
            cpu_before,
            cpu_after,
            sent_totals.get("send_ok", 0) - before["counts"].get("send_ok", 0),
            sent_totals.get("delivered", 0) - before["counts"].get("delivered", 0),
            idle_cpu,
            cpu_window_s,
        ),
    }
    report(
        f"phase {name}: {result['send_ok_per_s']} msg/s acknowledged, "
        f"{result['delivered_per_s']} deliveries/s, live latency {live}, "
        f"lost {correctness['lost']}, order violations {correctness['order_violations']}"
    )
    return result


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in ("counts", "errors", "disconnects"):
        found[key] = {
            name: value - before[key].get(name, 0)
            for name, value in after[key].items()
            if value - before[key].get(name, 0)
        }
    return found


async def _idle(
    config: LoadConfig,
    sampler: ServerSampler,
    http: aiohttp.ClientSession,
    baseline: dict[str, Any],
    connected: int,
    report: Reporter,
) -> dict[str, Any]:
    report(f"idle: letting {connected} connections settle for {config.idle_settle_s:g} s ...")
    await asyncio.sleep(config.idle_settle_s)
    now = await sampler.sample(http)
    per: dict[str, Any] = {}
    before_p = baseline.get("processes", {})
    after_p = now.get("processes", {})
    gateway_delta = 0.0
    for name, entry in after_p.items():
        if name in before_p and not name.startswith("loadgen"):
            delta_mb = entry["rss_mb"] - before_p[name]["rss_mb"]
            per[name] = {
                "rss_before_mb": before_p[name]["rss_mb"],
                "rss_after_mb": entry["rss_mb"],
                "kib_per_connection": round(delta_mb * 1024 / max(1, connected), 1),
            }
            if name.startswith("gateway"):
                gateway_delta += delta_mb
    result = {
        "connections": connected,
        "processes": per,
        "gateway_kib_per_connection": round(gateway_delta * 1024 / max(1, connected), 1),
    }
    report(
        f"idle: gateways grew {gateway_delta:.1f} MiB for {connected} connections = "
        f"{result['gateway_kib_per_connection']} KiB per connection"
    )
    return result


def _correctness(results: list[dict[str, Any]], totals: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "lost",
        "order_violations",
        "unverified_clients",
        "clients_with_loss",
        "gaps",
        "duplicate_frames_suppressed",
    )
    summary = {k: sum(int(r["correctness"][k]) for r in results) for k in keys}
    summary["duplicates_to_application"] = totals["app_duplicates"]
    summary["seq_conflicts"] = totals["seq_conflicts"]
    summary["messages_checked"] = sum(r["correctness"]["messages_checked"] for r in results)
    summary["ok"] = (
        bool(results)
        and summary["lost"] == 0
        and summary["order_violations"] == 0
        and summary["unverified_clients"] == 0
        and summary["duplicates_to_application"] == 0
        and summary["seq_conflicts"] == 0
    )
    return summary


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def saturation(timeline: list[dict[str, Any]], gateways: list[str]) -> dict[str, Any]:
    """Averages over the sending seconds: machine CPU, each process's CPU (% of one core), lock
    waits, lag and backlog; and which of them is the likeliest first limit."""
    sending = [p for p in timeline if p["phase"][:1].isdigit() and p["sent_per_s"] > 0]
    if not sending:
        return {}
    cpu: dict[str, list[float]] = {}
    for p in sending:
        for name, entry in p["server"].get("processes", {}).items():
            if "cpu_pct" in entry:
                cpu.setdefault(name, []).append(entry["cpu_pct"])
    per_process = {n: _mean(v) for n, v in sorted(cpu.items(), key=lambda i: -sum(i[1]))}
    machine = _mean(
        [
            p["server"]["machine_cpu_pct"]
            for p in sending
            if p["server"].get("machine_cpu_pct") is not None
        ]
    )
    locks = _mean([float(p["server"].get("pg_lock_waits", 0)) for p in sending])
    lag = max((float(p["server"].get("kafka_lag", 0)) for p in sending), default=0.0)
    backlog = max((float(p["server"].get("outbox_pending", 0)) for p in sending), default=0.0)
    top = next(iter(per_process), None)
    verdict = []
    if machine is not None and machine >= 90:
        verdict.append(f"the 2 cores: machine CPU {machine}% busy on average")
    if top is not None:
        verdict.append(f"largest CPU user: {top} at {per_process[top]}% of a core")
    if locks and locks >= 1:
        verdict.append(f"PostgreSQL lock waits average {locks}")
    if lag >= 1000:
        verdict.append(f"Kafka consumer lag reached {lag:.0f}")
    if backlog >= 1000:
        verdict.append(f"outbox backlog reached {backlog:.0f}")
    return {
        "machine_cpu_pct": machine,
        "process_cpu_pct": per_process,
        "gateways_cpu_pct": round(sum(per_process.get(g) or 0 for g in gateways), 1),
        "pg_lock_waits_avg": locks,
        "kafka_lag_max": lag,
        "outbox_backlog_max": backlog,
        "verdict": "; ".join(verdict) or "nothing saturated",
    }


def stability(timeline: list[dict[str, Any]], window: int = 600) -> dict[str, Any]:
    """Soak: first and last `window` seconds compared (gateway RSS, lag, error rate)."""
    sending = [p for p in timeline if p["phase"][:1].isdigit()]
    if len(sending) < 4:
        return {"judged": False}
    size = min(window, len(sending) // 3)
    first, last = sending[:size], sending[-size:]

    def rss(points: list[dict[str, Any]]) -> float:
        return sum(
            sum(
                e["rss_mb"]
                for n, e in p["server"].get("processes", {}).items()
                if n.startswith("gateway")
            )
            for p in points
        ) / len(points)

    def metric(points: list[dict[str, Any]], key: str) -> float:
        return sum(float(p["server"].get(key, 0)) for p in points) / len(points)

    rss_first, rss_last = rss(first), rss(last)
    lag_first, lag_last = metric(first, "kafka_lag"), metric(last, "kafka_lag")
    lat_first = _mean([p["latency_ms"]["p99"] for p in first if p["latency_ms"].get("count")])
    lat_last = _mean([p["latency_ms"]["p99"] for p in last if p["latency_ms"].get("count")])
    flat_rss = rss_last <= rss_first * 1.10 + 20
    flat_lag = lag_last <= lag_first + 100
    flat_latency = lat_first is None or lat_last is None or lat_last <= lat_first * 1.5 + 20
    return {
        "judged": True,
        "window_s": size,
        "gateway_rss_mb": [round(rss_first, 1), round(rss_last, 1)],
        "kafka_lag": [round(lag_first, 1), round(lag_last, 1)],
        "p99_ms": [lat_first, lat_last],
        "stable": flat_rss and flat_lag and flat_latency,
    }


def _machine() -> dict[str, Any]:
    import os
    import platform

    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    return {
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg": os.getloadavg(),
        "note": "everything (stack and load generator) on this one host",
    }


def loadtest_command(
    settings: Settings, config: LoadConfig, report: Reporter, direct: bool = False
) -> int:
    view = asyncio.run(stack_view(Stack(settings)))
    if direct:
        config.ws_urls = view.gateway_urls
        config.notes.append(f"WebSockets straight to the gateways {view.gateway_urls}")
    document = asyncio.run(run_loadtest(config, view, report))
    correctness = document["correctness"]
    if config.scenario == "idle":  # no messages: nothing to verify
        report("correctness: not applicable (idle connections only)")
        return 0
    report(f"correctness: {'OK' if correctness['ok'] else 'FAILED'} {correctness}")
    return 0 if correctness["ok"] else 1
