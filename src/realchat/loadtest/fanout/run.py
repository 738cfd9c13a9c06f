"""A whole `realchat bench fanout` run: Centrifugo, then RealChat, the same blocks for both.

Per server: an idle block (a fresh server, connections opened in steps with settles, RSS per
connection) and a fan-out block per entry (subscribers connected once; per rate: the idle CPU
rate, then an open-loop publish, then waiting until every delivery arrived or a deadline; CPU,
latency and completeness over that window).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
import secrets
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from realchat.config import Settings
from realchat.loadtest.aggregation import summarize
from realchat.loadtest.fanout import centrifugo, realchat_side
from realchat.loadtest.fanout.client import Spec
from realchat.loadtest.fanout.measure import (
    Group,
    Snapshot,
    cores_busy,
    group_cpu,
    idle_rates,
    kib_per_connection,
    snapshot,
)
from realchat.loadtest.fanout.plan import connection_specs, shares
from realchat.loadtest.fanout.pool import ANSWER_TIMEOUT_S, ClientPool
from realchat.loadtest.fanout.publisher import Publish, open_loop
from realchat.loadtest.fanout.render import render
from realchat.loadtest.fanout.results import FanoutResult, IdleResult, IdleStep, ratios
from realchat.loadtest.population import ProvisioningError
from realchat.loadtest.stackview import StackView, stack_view
from realchat.stack.state import with_saved_shape
from realchat.stack.supervisor import Stack

Reporter = Callable[[str], None]
SERVERS = ("centrifugo", "realchat")
ENTRIES = ("direct", "haproxy")


class FanoutError(RuntimeError):
    """The benchmark cannot run; the message says why."""


@dataclass
class FanoutOptions:
    seconds: float = 30.0
    rates: tuple[float, ...] = (10.0, 50.0)
    subscribers: int = 1000
    #: RealChat accounts the subscribers' connections are spread over (devices of each).
    users: int = 10
    entries: tuple[str, ...] = ENTRIES
    idle_connections: int = 10_000
    idle_steps: int = 4
    #: After each idle step; longer than a heartbeat cycle (20 s RealChat, 25 s Centrifugo).
    idle_settle_s: float = 30.0
    #: "direct" (spread over the gateways, what the gateway's figure needs) or "haproxy".
    idle_entry: str = "direct"
    #: Idle CPU measured before each rate, subtracted where stated.
    idle_cpu_s: float = 5.0
    workers: int = 2
    #: Restart the gateways before the idle block (warm-up memory is not per-connection memory);
    #: off where the stack is shared with others (tests).
    fresh_gateways: bool = True
    servers: tuple[str, ...] = SERVERS
    skip_idle: bool = False
    skip_fanout: bool = False
    cache_dir: Path = centrifugo.DEFAULT_CACHE_DIR
    output: Path = Path("reports/bench-fanout.json")


@dataclass
class Run:
    options: FanoutOptions
    report: Reporter
    http: aiohttp.ClientSession
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    fanout: list[FanoutResult] = field(default_factory=list)
    idle: list[IdleResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _mib(value: int) -> float:
    return round(value / 2**20, 1)


def _with_client(groups: dict[str, Group], pool: ClientPool) -> dict[str, Group]:
    """The load client's own share: its workers and this process (without the servers it
    started, which are groups of their own)."""
    client = Group((*pool.pids,), children=True)
    return {**groups, "client": client, "bench": Group((os.getpid(),), children=False)}


# -- blocks ---------------------------------------------------------------------------------------


async def idle_block(
    run: Run,
    server: str,
    entry: str,
    kind: str,
    channel: str,
    specs: list[Spec],
    groups: dict[str, Group],
) -> IdleResult:
    options = run.options
    pool = ClientPool(kind, channel, specs, options.workers)
    await pool.start()
    try:
        measured = _with_client(groups, pool)
        await asyncio.sleep(min(5.0, options.idle_settle_s))
        base = snapshot(measured)
        steps: list[IdleStep] = []
        snaps: list[Snapshot] = [base]
        status: dict[str, Any] = {}
        for count in shares(len(specs), options.idle_steps):
            status = await pool.open(count)
            run.report(
                f"  {server} idle: {status['open']} open, {status['failed']} failed; settling "
                f"{options.idle_settle_s:g} s"
            )
            await asyncio.sleep(options.idle_settle_s)
            snaps.append(snapshot(measured))
            steps.append(
                IdleStep(
                    status["open"],
                    status["failed"],
                    {name: _mib(rss) for name, rss in snaps[-1].rss.items()},
                )
            )
        last, before_last = snaps[-1], snaps[-2]
        added = steps[-1].connections - (steps[-2].connections if len(steps) > 1 else 0)
        open_now = steps[-1].connections
        return IdleResult(
            server=server,
            entry=entry,
            connections=open_now,
            settle_s=options.idle_settle_s,
            baseline_rss_mib={name: _mib(rss) for name, rss in base.rss.items()},
            steps=steps,
            kib_per_connection={
                name: kib_per_connection(base.rss[name], rss, open_now)
                for name, rss in last.rss.items()
            },
            marginal_kib_per_connection={
                name: kib_per_connection(before_last.rss[name], rss, added)
                for name, rss in last.rss.items()
            },
            load_average=os.getloadavg(),
            first_error=status.get("first_error"),
        )
    finally:
        await pool.close()


async def _drain(pool: ClientPool, tag: str, expected: int, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        # A worker busy reading a backlog may answer late: wait for it as long as the drain's
        # own deadline allows (on a saturated machine 30 s was not enough, and the run died).
        left = max(ANSWER_TIMEOUT_S, deadline - time.monotonic())
        if await pool.count(tag, left) >= expected:
            return
        await asyncio.sleep(0.25)


async def fanout_block(
    run: Run,
    server: str,
    entry: str,
    kind: str,
    channel: str,
    specs: list[Spec],
    groups: dict[str, Group],
    publish: Publish,
) -> None:
    options = run.options
    pool = ClientPool(kind, channel, specs, options.workers)
    await pool.start()
    try:
        status = await pool.open(len(specs))
        run.report(f"  {server} {entry}: {status['open']} subscribers ({status['failed']} failed)")
        if status["open"] == 0:
            raise FanoutError(
                f"{server} {entry}: no subscriber connected ({status['first_error']})"
            )
        measured = _with_client(groups, pool)
        for rate in options.rates:
            tag = f"{run.tag}.{server}.{entry}.{rate:g}"
            idle_start = snapshot(measured)
            await asyncio.sleep(options.idle_cpu_s)
            idle = idle_rates(idle_start, snapshot(measured))
            subscribers = status["open"]
            before = snapshot(measured)
            published = await open_loop(publish, tag, rate, options.seconds)
            published_at = time.monotonic()
            expected = published.published * subscribers
            await _drain(pool, tag, expected, max(10.0, 2 * options.seconds))
            after = snapshot(measured)
            delivered, hist, status = await pool.report(tag)
            result = FanoutResult(
                server=server,
                entry=entry,
                rate_msgs_per_s=rate,
                subscribers=subscribers,
                seconds=options.seconds,
                published=published.published,
                publish_errors=published.errors,
                first_publish_error=published.first_error,
                publish_lag_max_ms=published.lag_max_ms,
                expected=expected,
                delivered=delivered,
                window_s=round(after.at - before.at, 2),
                drain_s=round(after.at - published_at, 2),
                latency_ms=summarize(hist),
                cpu=group_cpu(before, after, idle, delivered, published.published),
                machine_cores_busy=cores_busy(before, after),
                load_average=os.getloadavg(),
                connections=status,
            )
            run.fanout.append(result)
            run.report(
                f"  {server} {entry} {rate:g} msg/s: {delivered}/{expected} delivered, edge "
                f"{result.edge()} us/delivery, p50/p95/p99 {result.latency_ms.get('p50')}/"
                f"{result.latency_ms.get('p95')}/{result.latency_ms.get('p99')} ms, "
                f"{result.machine_cores_busy} cores busy"
            )
    finally:
        await pool.close()


# -- servers --------------------------------------------------------------------------------------


async def run_centrifugo(run: Run, workdir: Path) -> None:
    options = run.options
    binary = await asyncio.to_thread(centrifugo.ensure_built, options.cache_dir, run.report)
    config = centrifugo.CentrifugoConfig(
        host="127.0.0.1",
        port=_free_port(),
        hmac_secret=secrets.token_urlsafe(32),
        api_key=secrets.token_urlsafe(24),
        pid_file=workdir / "centrifugo.pid",
    )
    chan = centrifugo.channel(run.tag)
    tokens = [
        centrifugo.client_token(config.hmac_secret, f"user-{n}") for n in range(options.users)
    ]

    def specs(count: int) -> list[Spec]:
        return connection_specs([config.ws_url], tokens, count, lambda url, _token: url)

    async def fresh(block: str) -> centrifugo.CentrifugoServer:
        server = centrifugo.CentrifugoServer(binary, config, workdir / block)
        await server.start()
        return server

    if not options.skip_idle:
        run.report(f"centrifugo: idle, {options.idle_connections} connections (fresh server)")
        server = await fresh("idle")
        try:
            groups = {"centrifugo": Group((server.pid,))}
            run.idle.append(
                await idle_block(
                    run,
                    "centrifugo",
                    "direct",
                    "centrifugo",
                    chan,
                    specs(options.idle_connections),
                    groups,
                )
            )
        finally:
            await server.stop()
    if not options.skip_fanout:
        run.report(f"centrifugo: fan-out to {options.subscribers} subscribers (fresh server)")
        server = await fresh("fanout")

        async def publish(seq: int, payload: str) -> None:
            await centrifugo.publish(run.http, config, chan, payload)

        try:
            groups = {"centrifugo": Group((server.pid,))}
            await fanout_block(
                run,
                "centrifugo",
                "direct",
                "centrifugo",
                chan,
                specs(options.subscribers),
                groups,
                publish,
            )
        finally:
            await server.stop()


async def realchat_view(settings: Settings) -> tuple[Stack, StackView]:
    stack = Stack(with_saved_shape(settings))
    view = await stack_view(stack)
    if not view.gateway_urls or not all(name in view.pids for name in view.gateways):
        raise FanoutError(
            "the RealChat stack is not running (or a gateway is down): start it with "
            "`realchat stack up --detach` (`make bench-fanout` does)"
        )
    return stack, view


async def run_realchat(run: Run, settings: Settings) -> None:
    options = run.options
    stack, view = await realchat_view(settings)
    base_url = f"http://{settings.http.host}:{settings.http.port}"
    balanced = "balancer" in view.pids
    entries = [e for e in options.entries if e == "direct" or balanced]
    if len(entries) < len(options.entries):
        run.notes.append("one gateway, no HAProxy: only the direct entry was measured")
    senders = realchat_side.senders_for(max(options.rates))
    how = "in bulk" if view.operator is not None else "over REST"
    run.report(
        f"realchat: creating {options.users} subscriber and {senders} sender users {how} ..."
    )
    audience = await realchat_side.provision(
        run.http, base_url, options.users, senders, view.operator
    )
    run.report(f"  users and conversation ready in {audience.seconds:g} s")
    entrypoints = {"direct": view.gateway_urls, "haproxy": [base_url]}

    def specs(entry: str, count: int) -> list[Spec]:
        return connection_specs(
            entrypoints[entry], audience.subscriber_tokens, count, realchat_side.ws_url
        )

    if not options.skip_idle:
        if options.fresh_gateways:
            run.report(f"realchat: restarting {', '.join(view.gateways)} for the idle measurement")
            await realchat_side.restart_gateways(stack, view.gateways)
            stack, view = await realchat_view(settings)
        entry = options.idle_entry if balanced else "direct"
        run.report(f"realchat: idle, {options.idle_connections} connections via {entry}")
        run.idle.append(
            await idle_block(
                run,
                "realchat",
                entry,
                "realchat",
                audience.conversation_id,
                specs(entry, options.idle_connections),
                realchat_side.edge_groups(view.pids),
            )
        )
    if not options.skip_fanout:
        for entry in entries:
            # Publish where the clients connect: through HAProxy, or straight to a gateway.
            publish = realchat_side.rest_publisher(run.http, entrypoints[entry][0], audience)
            run.report(f"realchat: fan-out to {options.subscribers} subscribers via {entry}")
            await fanout_block(
                run,
                "realchat",
                entry,
                "realchat",
                audience.conversation_id,
                specs(entry, options.subscribers),
                realchat_side.groups(view.pids),
                publish,
            )


# -- the command ----------------------------------------------------------------------------------


def _machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "note": "servers and load client share this one machine",
    }


async def run_bench_fanout(
    settings: Settings, options: FanoutOptions, report: Reporter
) -> dict[str, Any]:
    load_before = os.getloadavg()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    # Both servers get the same accounts: as many as RealChat's per-user limit needs.
    connections = max(options.subscribers, 0 if options.skip_idle else options.idle_connections)
    options = dataclasses.replace(
        options,
        users=realchat_side.subscriber_users(
            options.users, connections, settings.gateway.max_connections_per_user
        ),
    )
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        run = Run(options, report, http)
        with tempfile.TemporaryDirectory(prefix="bench-fanout-") as workdir:
            if "centrifugo" in options.servers:
                await run_centrifugo(run, Path(workdir))
            if "realchat" in options.servers:
                await run_realchat(run, settings)
    found = ratios(run.fanout, run.idle)
    return {
        "benchmark": "bench-fanout",
        "timestamp": started,
        "machine": _machine(load_before),
        "settings": {
            **{k: v for k, v in options.__dict__.items() if k not in ("cache_dir", "output")},
            "payload_bytes": 100,
            "centrifugo_version": centrifugo.VERSION,
            "realchat_gateways": settings.stack.gateways,
            "realchat_sender_users": realchat_side.senders_for(max(options.rates)),
        },
        "notes": run.notes,
        "fanout": [r.to_json() for r in run.fanout],
        "idle": [r.to_json() for r in run.idle],
        "ratios_realchat_over_centrifugo": found,
        "text": render(run.fanout, run.idle, found, os.cpu_count()),
    }


def write(document: dict[str, Any], output: Path) -> Path:
    """The JSON report and the text beside it (same stem, .txt); atomically each."""
    output.parent.mkdir(parents=True, exist_ok=True)
    text = output.with_suffix(".txt")
    for path, content in (
        (output, json.dumps(document, indent=2, default=str) + "\n"),
        (text, document["text"] + "\n"),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content)
        os.replace(tmp, path)
    return text


def bench_fanout_command(settings: Settings, options: FanoutOptions, report: Reporter) -> int:
    """`realchat bench fanout`: run, print the summary, save JSON and text; 1 with a reason."""
    try:
        document = uvloop.run(run_bench_fanout(settings, options, report))
    except (FanoutError, centrifugo.CentrifugoError, ProvisioningError) as exc:
        report(f"error: {exc}")
        return 1
    text = write(document, options.output)
    report("")
    report(document["text"])
    report(f"results written to {options.output} and {text}")
    return 0
