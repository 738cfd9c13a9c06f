"""`realchat loadtest`: many WebSocket clients against a running stack, through the public API only.

The coordinator (this module) creates users (several devices each) and conversations (a mix of
1:1 and groups) over REST (`population.py`), splits the connections over worker processes
(`workers.py` spawns `realchat.loadtest.worker`, each on its own 127.0.0.x source address, and
speaks the typed messages of `messages.py` with them), drives the scenario's phases
(`scenarios.py`: an open-loop send rate for some seconds, with slow clients and reconnect churn),
samples the server side (`sampler.py`) once a second into a timeline (`aggregation.py`), and
after each phase has every client sync and checks it holds every message of its conversations
(`verdicts.py`). Reports: JSON, HTML (inline SVG) and a text summary (`report.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from realchat.config import Settings
from realchat.filelimit import raise_file_limit
from realchat.loadtest.aggregation import Aggregate, delta, summarize
from realchat.loadtest.cost import cpu_cost, idle_rates
from realchat.loadtest.messages import (
    Done,
    ExitCommand,
    PhaseCommand,
    PhaseDone,
    Ready,
    Verified,
    VerifyCommand,
)
from realchat.loadtest.population import Population, Shape, population_for, users_for
from realchat.loadtest.report import write_reports
from realchat.loadtest.sampler import ServerSampler
from realchat.loadtest.scenarios import LoadConfig, Phase, phases
from realchat.loadtest.stackview import StackView, stack_view
from realchat.loadtest.verdicts import (
    phase_correctness,
    phase_passed,
    run_correctness,
    saturation,
    stability,
)
from realchat.loadtest.workers import LoadTestError, WorkerHandle, start_workers
from realchat.stack.state import with_saved_shape
from realchat.stack.supervisor import Stack

Reporter = Callable[[str], None]


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


@dataclass
class Measured:
    """What driving the workers through a scenario found, before it becomes a report."""

    baseline: dict[str, Any] = field(default_factory=dict)
    connect_s: float = 0.0
    connected: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    idle: dict[str, Any] | None = None
    idle_cpu: dict[str, float] = field(default_factory=dict)
    tasks_exposed: bool = False


async def run_loadtest(config: LoadConfig, view: StackView, report: Reporter) -> dict[str, Any]:
    """Run `config`'s scenario against the stack `view` describes; write and return the report."""
    fd_limit = raise_file_limit()
    report(
        f"loadtest {config.scenario}: {config.connections} connections, "
        f"{config.workers} workers, open files limit {fd_limit}"
    )
    started_at = datetime.now(UTC)
    aggregate = Aggregate()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        population = await _populate(config, view, http, report)
        measured = await _drive(config, view, population, http, aggregate, report)
    document = _document(config, view, population, aggregate, measured, started_at, fd_limit)
    paths = write_reports(document, config.output_dir, config.name or config.scenario)
    for path in paths:
        report(f"saved {path}")
    return document


async def _populate(
    config: LoadConfig, view: StackView, http: aiohttp.ClientSession, report: Reporter
) -> Population:
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
    return population


async def _drive(
    config: LoadConfig,
    view: StackView,
    population: Population,
    http: aiohttp.ClientSession,
    aggregate: Aggregate,
    report: Reporter,
) -> Measured:
    """Start the workers and the sampling, run the scenario, and stop them all again."""
    measured = Measured()
    sampler = ServerSampler(dict(view.pids), dict(view.metrics_urls), view.dsn)
    await sampler.start()
    measured.baseline = await sampler.sample(http)
    handles = await start_workers(config, population, aggregate)
    for h in handles:
        sampler.pids[f"loadgen-{h.index}"] = h.process.pid
    stop_sampling = asyncio.Event()
    sampling = asyncio.create_task(_sample_loop(aggregate, sampler, http, stop_sampling, report))
    try:
        await _scenario(
            config, view, population, handles, aggregate, sampler, http, measured, report
        )
        await _stop_workers(handles)
    finally:
        stop_sampling.set()
        await sampling
        await sampler.close()
        measured.tasks_exposed = sampler.tasks_exposed
        for h in handles:
            if h.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    h.process.kill()
            await h.process.wait()
    return measured


async def _scenario(
    config: LoadConfig,
    view: StackView,
    population: Population,
    handles: list[WorkerHandle],
    aggregate: Aggregate,
    sampler: ServerSampler,
    http: aiohttp.ClientSession,
    measured: Measured,
    report: Reporter,
) -> None:
    """Wait for every connection, then idle or run the phases (a ramp stops at its first fail)."""
    connect_started = time.monotonic()
    ready = [await h.answer(Ready, timeout_s=600) for h in handles]
    measured.connect_s = round(time.monotonic() - connect_started, 1)
    measured.connected = sum(r.connected for r in ready)
    report(f"connected {measured.connected}/{config.connections} in {measured.connect_s} s")
    if config.scenario == "idle":
        measured.idle = await _idle(
            config, sampler, http, measured.baseline, measured.connected, report
        )
    measured.idle_cpu = await _idle_cpu(sampler, config.idle_cpu_s, report)
    conversations = sorted({c for u in population.users for c in u["conversations"]})
    run = _PhaseRun(config, handles, aggregate, view, sampler, measured.idle_cpu, report)
    for number, phase in enumerate(phases(config), 1):
        result = await run.phase(number, phase, conversations)
        measured.results.append(result)
        if config.scenario == "ramp" and not result["passed"]:
            break


async def _stop_workers(handles: list[WorkerHandle]) -> None:
    for h in handles:
        with contextlib.suppress(ConnectionError):
            await h.command(ExitCommand())
    for h in handles:
        with contextlib.suppress(LoadTestError):
            await h.answer(Done, timeout_s=120)


def _document(
    config: LoadConfig,
    view: StackView,
    population: Population,
    aggregate: Aggregate,
    measured: Measured,
    started_at: datetime,
    fd_limit: int,
) -> dict[str, Any]:
    """The report's content (`report.py` renders it as JSON, HTML and text)."""
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
            "connect_s": measured.connect_s,
            "connected": measured.connected,
            "open_files_limit": fd_limit,
        },
        "phases": measured.results,
        "totals": final,
        "latency_ms": {name: summarize(h) for name, h in aggregate.run.items()},
        "correctness": run_correctness(measured.results, final),
        "idle": measured.idle,
        "server_baseline": measured.baseline,
        "idle_cpu_cores": {name: round(rate, 4) for name, rate in measured.idle_cpu.items()},
        "asyncio_tasks": "sampled"
        if measured.tasks_exposed
        else "not exposed: no RealChat process exports an asyncio task count",
        "timeline": aggregate.timeline,
    }
    document["saturation"] = saturation(aggregate.timeline, view.gateways)
    document["processes_ended"] = view.ended()
    if config.scenario == "soak":
        document["stability"] = stability(aggregate.timeline)
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


@dataclass
class _PhaseRun:
    """Runs phases: the workers send, drain, then every client is verified."""

    config: LoadConfig
    handles: list[WorkerHandle]
    aggregate: Aggregate
    view: StackView
    sampler: ServerSampler
    idle_cpu: dict[str, float]
    report: Reporter

    async def phase(self, number: int, phase: Phase, conversations: list[str]) -> dict[str, Any]:
        name = f"{number}@{phase.rate:g}/s"
        aggregate, report = self.aggregate, self.report
        aggregate.phase_name = name
        for hist in aggregate.phase.values():
            hist.reset()
        before = aggregate.totals()
        report(
            f"phase {name}: {phase.rate:g} msg/s for {phase.seconds:g} s, "
            f"churn {phase.churn_per_min:.0%}/min"
        )
        cpu_before = self.sampler.cpu_seconds()
        started = time.monotonic()
        done = await self._send(phase)
        cpu_after = self.sampler.cpu_seconds()
        cpu_window_s = time.monotonic() - started
        sent_totals = aggregate.totals()["counts"]
        drained_s = round(time.monotonic() - started - phase.seconds, 1)
        expected, from_database = await self._expected(done, conversations)
        aggregate.phase_name = f"verify {number}"
        report(
            f"phase {name}: sends done (drained {drained_s} s after the window); "
            f"verifying {len(expected)} conversations on every client ..."
        )
        verify_started = time.monotonic()
        verified = await self._verify(expected)
        after = aggregate.totals()
        changed = delta(before, after)
        latency = {n: summarize(h) for n, h in aggregate.phase.items()}
        correctness = phase_correctness(verified, done, changed, after, expected, from_database)
        live = latency["live"]
        send_ok = changed["counts"].get("send_ok", 0)
        passed = phase_passed(correctness, live, send_ok, phase, self.config.ramp_p95_ms)
        # Over the send window and its drain (not the verification that follows), less what
        # the same seconds cost with the clients connected and quiet.
        cpu = cpu_cost(
            cpu_before,
            cpu_after,
            sent_totals.get("send_ok", 0) - before["counts"].get("send_ok", 0),
            sent_totals.get("delivered", 0) - before["counts"].get("delivered", 0),
            self.idle_cpu,
            cpu_window_s,
        )
        verify_s = round(time.monotonic() - verify_started, 1)
        result = _phase_result(name, phase, changed, latency, correctness, drained_s, verify_s)
        result["passed"] = passed
        result["cpu_cost"] = cpu
        report(
            f"phase {name}: {result['send_ok_per_s']} msg/s acknowledged, "
            f"{result['delivered_per_s']} deliveries/s, live latency {live}, "
            f"lost {correctness['lost']}, order violations {correctness['order_violations']}"
        )
        return result

    async def _send(self, phase: Phase) -> list[PhaseDone]:
        """Each worker sends its share of the rate for the phase, then drains."""
        share = phase.rate / len(self.handles)
        command = PhaseCommand(share, phase.seconds, phase.churn_per_min)
        for h in self.handles:
            await h.command(command)
        timeout_s = phase.seconds * 3 + 300
        return [await h.answer(PhaseDone, timeout_s=timeout_s) for h in self.handles]

    async def _expected(
        self, done: list[PhaseDone], conversations: list[str]
    ) -> tuple[dict[str, int], bool]:
        """Each conversation's last seq: the highest acknowledged, or stored when the database
        is at hand (and whether it was)."""
        expected: dict[str, int] = {}
        for d in done:
            for conversation, seq in d.acked.items():
                expected[conversation] = max(expected.get(conversation, 0), seq)
        stored = await _last_seqs(self.view.dsn, conversations)
        if stored is not None:
            for conversation, seq in stored.items():
                expected[conversation] = max(expected.get(conversation, 0), seq)
        return expected, stored is not None

    async def _verify(self, expected: dict[str, int]) -> list[Verified]:
        for h in self.handles:
            await h.command(VerifyCommand(expected))
        return [await h.answer(Verified, timeout_s=900) for h in self.handles]


def _phase_result(
    name: str,
    phase: Phase,
    changed: dict[str, Any],
    latency: dict[str, Any],
    correctness: dict[str, Any],
    drained_s: float,
    verify_s: float,
) -> dict[str, Any]:
    """A phase's entry of the report (its verdict and CPU cost are added after)."""
    counts = changed["counts"]
    send_ok = counts.get("send_ok", 0)
    return {
        "phase": name,
        "target_rate": phase.rate,
        "seconds": phase.seconds,
        "churn_per_min": phase.churn_per_min,
        "sent": counts.get("sent", 0),
        "send_ok": send_ok,
        "send_skipped": counts.get("send_skipped", 0),
        "send_refused": counts.get("send_refused", 0),
        "sent_per_s": round(counts.get("sent", 0) / phase.seconds, 1),
        "send_ok_per_s": round(send_ok / phase.seconds, 1),
        "delivered": counts.get("delivered", 0),
        "delivered_per_s": round(counts.get("delivered", 0) / phase.seconds, 1),
        "drain_s": drained_s,
        "verify_s": verify_s,
        "reconnects": counts.get("reconnects", 0),
        "churned": counts.get("churned", 0),
        "resent": counts.get("resent", 0),
        "disconnects": changed["disconnects"],
        "errors": changed["errors"],
        "latency_ms": latency,
        "correctness": correctness,
    }


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


def _machine() -> dict[str, Any]:
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
    view = asyncio.run(stack_view(Stack(with_saved_shape(settings))))
    if direct:
        config.ws_urls = view.gateway_urls
        config.notes.append(f"WebSockets straight to the gateways {view.gateway_urls}")
    document = asyncio.run(run_loadtest(config, view, report))
    correctness = document["correctness"]
    if config.scenario == "idle":  # no messages: nothing to verify
        report("correctness: not applicable (idle connections only)")
        return 0
    report(f"correctness: {'OK' if correctness['ok'] else 'FAILED'} {correctness}")
    ended = document["processes_ended"]
    for name, how in ended.items():
        report(f"FAILED: {name} ended during the run: {how}")
    stable = document.get("stability", {}).get("stable", True)
    if not stable:
        report(f"FAILED: not stable {document['stability']}")
    return 0 if correctness["ok"] and not ended and stable else 1
