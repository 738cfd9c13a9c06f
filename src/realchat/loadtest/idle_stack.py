"""`realchat bench idle-stack`: idle WebSocket connections held by the running stack's gateways
(100,000 by default, on one machine): memory per connection at each gateway, CPU while idle, and
how long connecting took.

A process holds at most its hard file limit of descriptors (often 20,000), so the connections
go straight to every gateway (`stack.gateways` of them), round robin, from several client worker
processes, each connection from one of several loopback source addresses (one address has ~28k
ephemeral ports). The clients (`idle_client.py`) connect, wait for `hello` and then only answer
pings: bare protocol objects, so the client side keeps up on a busy 2-core machine (the fan-out
bench's aiohttp clients, which also sync, opened ~40 connections a second here and, starved of
CPU, missed pongs for 60 s and were closed with 4002). The gateways are restarted first, so what
they grow by is what the connections cost (RSS, from /proc; kernel socket buffers are not in
it).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from realchat.config import Settings
from realchat.loadtest.fanout import realchat_side
from realchat.loadtest.fanout.measure import Group, Snapshot, cores_busy, idle_rates, snapshot
from realchat.loadtest.fanout.plan import connection_specs, shares, source_addresses
from realchat.loadtest.fanout.pool import ClientPool
from realchat.loadtest.fanout.realchat_side import ws_url
from realchat.loadtest.fanout.run import FanoutError, realchat_view
from realchat.loadtest.stackview import StackView
from realchat.stack.supervisor import Stack

#: Connections one client worker process holds at most (below a 20,000 file limit).
PER_WORKER = 15_000
_ACTIVE = "realchat_gateway_active_connections "


class IdleStackError(RuntimeError):
    """The benchmark cannot run; the message says why."""


@dataclass
class IdleStackOptions:
    connections: int = 100_000
    steps: int = 5
    #: After each step, before memory is read: longer than a heartbeat (pings went out).
    settle_s: float = 25.0
    #: The window CPU while idle is measured over, after the last step.
    idle_cpu_s: float = 30.0
    #: Client worker processes (at least enough for `PER_WORKER` connections each).
    workers: int = 8
    #: User ids the connections are devices of (tokens minted with the stack's signing key);
    #: raised to what the gateways' per-user connection limit needs for `connections`.
    users: int = 20
    fresh_gateways: bool = True
    output: Path = Path("reports/bench-idle-stack.json")


@dataclass(frozen=True)
class GatewayIdle:
    #: Open sessions the gateway itself counts (its active-connections gauge).
    connections: int
    rss_mib: float
    #: RSS growth since the gateway's baseline per connection it holds.
    kib_per_connection: float | None


@dataclass(frozen=True)
class Step:
    connections: int
    failed: int
    #: Wall time the step's connections took from the first connect to the last `hello`.
    connect_s: float
    gateways: dict[str, GatewayIdle]
    client_rss_mib: float
    load_average: tuple[float, float, float]


@dataclass
class IdleStackResult:
    gateways: int
    source_addresses: int
    workers: int
    baseline_rss_mib: dict[str, float]
    steps: list[Step] = field(default_factory=list)
    #: Group -> cores busy on average over the idle window (CPU seconds per second).
    idle_cores: dict[str, float] = field(default_factory=dict)
    machine_cores_busy_idle: float | None = None
    first_error: str | None = None
    #: False until the idle CPU is measured: a report saved after each step says so.
    complete: bool = False


def _mib(value: int) -> float:
    return round(value / 2**20, 1)


def per_connection_kib(base: int, now: int, connections: int) -> float | None:
    if connections <= 0:
        return None
    return round((now - base) / 1024 / connections, 2)


def active_connections(metrics_text: str) -> int:
    """The active-connections gauge in a gateway's Prometheus exposition."""
    for line in metrics_text.splitlines():
        if line.startswith(_ACTIVE):
            return int(float(line[len(_ACTIVE) :]))
    raise ValueError("no realchat_gateway_active_connections in the metrics")


async def _gateway_counts(http: aiohttp.ClientSession, view: StackView) -> dict[str, int]:
    counts = {}
    for name in view.gateways:
        async with http.get(view.metrics_urls[name]) as reply:
            counts[name] = active_connections(await reply.text())
    return counts


async def _view(settings: Settings) -> tuple[Stack, StackView]:
    try:
        return await realchat_view(settings)
    except FanoutError as exc:
        raise IdleStackError(str(exc)) from None


def _groups(view: StackView, pool: ClientPool) -> dict[str, Group]:
    groups = {name: Group((view.pids[name],)) for name in view.gateways}
    return {**groups, "client": Group(pool.pids)}


async def run_idle_stack(
    settings: Settings,
    options: IdleStackOptions,
    report: Any,
    save: Callable[[IdleStackResult], None],
) -> IdleStackResult:
    stack, view = await _view(settings)
    if options.fresh_gateways:
        report(f"restarting {', '.join(view.gateways)} (a fresh baseline)")
        await realchat_side.restart_gateways(stack, view.gateways)
        stack, view = await _view(settings)
    workers = max(options.workers, math.ceil(options.connections / PER_WORKER))
    per_user = settings.gateway.max_connections_per_user
    tokens = _tokens(view, max(options.users, math.ceil(options.connections / per_user)))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        specs = connection_specs(view.gateway_urls, tokens, options.connections, ws_url)
        pool = ClientPool("realchat", "", specs, workers, "realchat.loadtest.idle_client")
        await pool.start()
        try:
            return await _hold(http, view, pool, options, workers, report, save)
        finally:
            report("closing the connections ...")
            await pool.close()


def _tokens(view: StackView, users: int) -> list[str]:
    """Access tokens of `users` new user ids, signed with the stack's key: an idle session
    needs a valid token, not an account (it never reads history), and hashing passwords on a
    busy machine is what made sign-ups time out."""
    if view.operator is None:
        raise IdleStackError("the stack's database and signing key are needed to mint tokens")
    return [view.operator.issuer.issue(uuid.uuid4())[0] for _ in range(users)]


async def _hold(
    http: aiohttp.ClientSession,
    view: StackView,
    pool: ClientPool,
    options: IdleStackOptions,
    workers: int,
    report: Any,
    save: Callable[[IdleStackResult], None],
) -> IdleStackResult:
    """Open the connections step by step; the report is saved after every step (a run cut
    short still leaves what it measured)."""
    groups = _groups(view, pool)
    await asyncio.sleep(5.0)
    base = snapshot(groups)
    result = IdleStackResult(
        gateways=len(view.gateways),
        source_addresses=len(source_addresses(options.connections)),
        workers=workers,
        baseline_rss_mib={name: _mib(rss) for name, rss in base.rss.items()},
    )
    for count in shares(options.connections, options.steps):
        step = await _step(http, view, pool, groups, base, count, options, report)
        result.first_error = result.first_error or step.first_error
        result.steps.append(step.measured)
        save(result)
        report(
            "    "
            + ", ".join(
                f"{n}: {g.connections} @ {g.kib_per_connection} KiB"
                for n, g in step.measured.gateways.items()
            )
        )
    report(f"measuring CPU while idle for {options.idle_cpu_s:g} s ...")
    before = snapshot(groups)
    await asyncio.sleep(options.idle_cpu_s)
    after = snapshot(groups)
    result.idle_cores = {name: round(rate, 3) for name, rate in idle_rates(before, after).items()}
    result.machine_cores_busy_idle = cores_busy(before, after)
    result.complete = True
    save(result)
    return result


@dataclass(frozen=True)
class _StepOutcome:
    measured: Step
    first_error: str | None


async def _step(
    http: aiohttp.ClientSession,
    view: StackView,
    pool: ClientPool,
    groups: dict[str, Group],
    base: Snapshot,
    count: int,
    options: IdleStackOptions,
    report: Any,
) -> _StepOutcome:
    """`count` more connections, a settle, then each gateway's count and memory."""
    started = time.monotonic()
    status = await pool.open(count)
    connect_s = round(time.monotonic() - started, 1)
    report(
        f"  {status['open']} open, {status['failed']} failed (+{count} in {connect_s} s); "
        f"settling {options.settle_s:g} s"
    )
    await asyncio.sleep(options.settle_s)
    now = snapshot(groups)
    counts = await _gateway_counts(http, view)
    step = Step(
        connections=int(status["open"]),
        failed=int(status["failed"]),
        connect_s=connect_s,
        gateways={
            name: GatewayIdle(
                counts[name],
                _mib(now.rss[name]),
                per_connection_kib(base.rss[name], now.rss[name], counts[name]),
            )
            for name in view.gateways
        },
        client_rss_mib=_mib(now.rss["client"]),
        load_average=os.getloadavg(),
    )
    return _StepOutcome(step, status.get("first_error"))


def render(result: IdleStackResult) -> str:
    last = result.steps[-1] if result.steps else None
    lines = [
        f"Idle WebSocket connections held by {result.gateways} gateways "
        f"({result.workers} client processes, {result.source_addresses} source addresses)",
        f"{'step':>5}{'open':>9}{'failed':>8}{'connect s':>11}  per gateway: connections @ KiB "
        "per connection",
    ]
    for n, step in enumerate(result.steps, 1):
        gateways = "  ".join(
            f"{g.connections}@{g.kib_per_connection}" for g in step.gateways.values()
        )
        lines.append(
            f"{n:>5}{step.connections:>9}{step.failed:>8}{step.connect_s:>11}  {gateways}  "
            f"(load {'/'.join(f'{v:.1f}' for v in step.load_average)})"
        )
    if last is not None:
        held = sum(g.connections for g in last.gateways.values())
        grown = sum(g.rss_mib - result.baseline_rss_mib[n] for n, g in last.gateways.items())
        lines.append(
            f"held at the end: {held} (clients count {last.connections}); gateways grew "
            f"{grown:.1f} MiB = {grown * 1024 / held if held else 0:.2f} KiB per connection; "
            f"connecting took {sum(s.connect_s for s in result.steps):.1f} s in all"
        )
    gateway_cores = sum(v for k, v in result.idle_cores.items() if k.startswith("gateway"))
    lines.append(
        f"CPU while idle: gateways {gateway_cores:.3f} cores in all, client "
        f"{result.idle_cores.get('client', 0.0):.3f}; machine {result.machine_cores_busy_idle} "
        "cores busy (everything on it)"
    )
    if result.first_error:
        lines.append(f"first client error: {result.first_error}")
    if not result.complete:
        lines.append("incomplete: the run ended before its last step and the idle CPU window")
    return "\n".join(lines)


def idle_stack_command(settings: Settings, options: IdleStackOptions, report: Any) -> int:
    load_before = os.getloadavg()
    started = datetime.now(UTC).isoformat(timespec="seconds")

    def save(result: IdleStackResult) -> None:
        text = render(result)
        document = {
            "benchmark": "bench-idle-stack",
            "timestamp": started,
            "cores": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_now": os.getloadavg(),
            "settings": {k: str(v) for k, v in asdict(options).items()},
            "result": asdict(result),
            "text": text,
        }
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(json.dumps(document, indent=2) + "\n")
        options.output.with_suffix(".txt").write_text(text + "\n")

    try:
        result = uvloop.run(run_idle_stack(settings, options, report, save))
    except IdleStackError as exc:
        report(f"error: {exc}")
        return 1
    report(render(result))
    report(f"results written to {options.output} and {options.output.with_suffix('.txt')}")
    return 0
