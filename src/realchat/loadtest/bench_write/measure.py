"""One path measured on freshly reset tables, its WAL fsyncs counted, its CPU sampled and its
writes checked; a scenario is every path in turn."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import replace

from realchat.loadtest.bench_write.cpu import (
    CpuSample,
    cpu_busy_pct,
    cpu_us_per_message,
    sample_cpu,
)
from realchat.loadtest.bench_write.database import commits, reset, stored_messages, wal_syncs
from realchat.loadtest.bench_write.driver import BenchContext
from realchat.loadtest.bench_write.paths import (
    run_grpc,
    run_grpc_stream,
    run_grpc_unary,
    run_service,
)
from realchat.loadtest.bench_write.pgbench import run_pgbench, run_pgbench_batch
from realchat.loadtest.bench_write.results import (
    BenchError,
    PathResult,
    ScenarioResult,
    scenario_result,
    wal_usage,
)
from realchat.loadtest.bench_write.scenarios import Scenario
from realchat.loadtest.procfs import CLOCK_TICKS_PER_S

#: Backends publish their WAL statistics when they exit or go idle; give them this long.
STATS_SETTLE_S = 1.5


async def measure(ctx: BenchContext, run: Awaitable[PathResult]) -> PathResult:
    """One path on freshly reset tables, with its WAL fsyncs counted and its writes checked."""
    await reset(ctx.dsn)
    await asyncio.sleep(STATS_SETTLE_S)
    syncs_before, commits_before = await wal_syncs(ctx.dsn), await commits(ctx.dsn)
    ctx.pids.clear()
    ctx.pids["postgres"] = ctx.postmaster
    cpu: list[CpuSample] = []
    sampler = asyncio.create_task(sample_cpu(cpu, ctx.pids))
    try:
        result = await run
    finally:
        sampler.cancel()
    await asyncio.sleep(STATS_SETTLE_S)
    syncs = await wal_syncs(ctx.dsn) - syncs_before
    committed = await commits(ctx.dsn) - commits_before
    stored = await stored_messages(ctx.dsn)
    if stored < result.messages:
        raise BenchError(
            f"{result.path}: {result.messages} sends completed but only {stored} messages "
            "are stored; the benchmark does not write what it claims to"
        )
    busy = cpu_busy_pct(cpu, result.window)
    per_msg = cpu_us_per_message(cpu, result.window, result.msgs_per_s, CLOCK_TICKS_PER_S)
    wal = wal_usage(stored, committed, syncs)
    result = replace(result, wal=wal, cpu_busy_pct=busy, cpu_us_per_msg=per_msg)
    ctx.report(
        f"  {result.path:<12} {result.msgs_per_s:>9.1f} msgs/s  p50 {result.latency.p50_ms:.2f} "
        f"p99 {result.latency.p99_ms:.2f} ms  cpu {busy}%  cpu us/msg {per_msg}  "
        f"msgs/commit {wal.messages_per_commit}  commits/fsync {wal.commits_per_wal_sync}  "
        f"errors {result.errors}"
    )
    return result


async def run_scenario(ctx: BenchContext, scenario: Scenario) -> ScenarioResult:
    ctx.report(
        f"{scenario.name}: {ctx.concurrency} callers, {scenario.conversations} conversation(s), "
        f"{ctx.warmup_s:g} s warm-up + {ctx.seconds:g} s per path"
    )
    pool_size = ctx.settings.database.pool_max_size
    paths = [
        await measure(ctx, run_grpc(ctx, scenario)),
        await measure(ctx, run_grpc_unary(ctx, scenario)),
        await measure(ctx, run_grpc_stream(ctx, scenario)),
        await measure(ctx, run_service(ctx, scenario)),
        await measure(ctx, run_pgbench(ctx, scenario, path="pgbench", clients=ctx.concurrency)),
        await measure(ctx, run_pgbench(ctx, scenario, path="pgbench-pool", clients=pool_size)),
        await measure(ctx, run_pgbench_batch(ctx, scenario, path="pgbench-batch")),
    ]
    return scenario_result(scenario, ctx.concurrency, paths)
