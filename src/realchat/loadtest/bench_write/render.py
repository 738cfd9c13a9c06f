"""The table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Sequence

from realchat.loadtest.bench_write.results import (
    CEILINGS,
    PathResult,
    ScenarioResult,
    throughput_ratio,
)


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _cpu_cell(run: PathResult) -> str:
    """CPU µs per message: chat / postgres / generator (`chat+gen` shown in the chat column)."""
    cpu = run.cpu_us_per_msg or {}
    chat = cpu.get("chat", cpu.get("chat+generator"))
    parts = (chat, cpu.get("postgres"), cpu.get("generator"))
    return "/".join("-" if v is None else f"{v:.0f}" for v in parts)


def _table_row(scenario: str, run: PathResult, ceilings: Sequence[PathResult]) -> str:
    latency = run.latency
    per_sync = run.wal.commits_per_wal_sync if run.wal else None
    per_commit = run.wal.messages_per_commit if run.wal else None
    ratios = " ".join(f"{throughput_ratio(run, c):>8.2f}" for c in ceilings)
    return (
        f"{scenario:<12} {run.path:<12} {run.msgs_per_s:>8.1f} {latency.p50_ms:>7.2f} "
        f"{latency.p95_ms:>7.2f} {latency.p99_ms:>7.2f} {latency.mean_ms:>7.2f} {run.errors:>6} "
        f"{ratios} {_optional(run.cpu_busy_pct):>5} {_optional(per_sync):>13} "
        f"{_optional(per_commit):>11} {_cpu_cell(run):>16}"
    )


def render_table(results: Sequence[ScenarioResult], cores: int | None) -> str:
    """The human-readable summary printed at the end of a run."""
    header = (
        f"{'scenario':<12} {'path':<12} {'msgs/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'mean ms':>7} {'errors':>6} {'/pgbench':>8} {'/pg-pool':>8} {'cpu %':>5} "
        f"{'commits/fsync':>13} {'msgs/commit':>11} {'cpu us/msg c/pg/g':>16}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        ceilings = [result.paths[c] for c in CEILINGS]
        lines.extend(_table_row(result.scenario, run, ceilings) for run in result.paths.values())
        for ceiling in ceilings:
            if (reported := ceiling.pgbench_reported) is not None:
                lines.append(
                    f"{'':<12} {ceiling.path}'s own summary (whole run): tps {reported.tps:.1f}, "
                    f"latency average {reported.latency_avg_ms:.2f} ms, failed {reported.failed}"
                )
    lines.append(
        f"{cores} cores. /pgbench, /pg-pool: msgs/s over pgbench's (clients = callers, clients "
        "= the pool's connections). cpu %: all cores, whole machine. cpu us/msg: CPU time per "
        "message of the chat process / PostgreSQL (all its processes) / the load generator "
        "(for `service`, the chat column is the one process that is both)."
    )
    return "\n".join(lines)
