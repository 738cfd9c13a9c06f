"""What a measured path yields (throughput, latency, WAL use, CPU) and how paths compare with
the pgbench ceilings: pure values and arithmetic, no I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from realchat.loadtest.bench_write.scenarios import Scenario


class BenchError(RuntimeError):
    """The benchmark cannot run or produced nothing trustworthy; the message says why."""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in (0, 100]) of values sorted ascending: always a real sample."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is not in (0, 100]")
    rank = math.ceil(q * len(sorted_values) / 100)
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


def summarize_latencies(latencies_ms: Iterable[float]) -> Latency:
    values = sorted(latencies_ms)
    if not values:
        raise ValueError("no latencies to summarize")
    return Latency(
        p50_ms=round(percentile(values, 50), 3),
        p95_ms=round(percentile(values, 95), 3),
        p99_ms=round(percentile(values, 99), 3),
        mean_ms=round(sum(values) / len(values), 3),
        max_ms=round(values[-1], 3),
    )


@dataclass(frozen=True)
class Sample:
    """One completed send (or batch of sends): when it completed (Unix time, like pgbench's log)
    and how long it took."""

    completed_at: float
    latency_ms: float
    #: Messages it wrote: 1 for a send, the batch size for a pgbench batch transaction.
    messages: int = 1


@dataclass(frozen=True)
class Window:
    """The measured part of a run (Unix time): completions in [start, end) count, the warm-up
    does not."""

    start: float
    end: float

    @classmethod
    def after_warmup(cls, started: float, warmup_s: float, seconds: float) -> Window:
        return cls(started + warmup_s, started + warmup_s + seconds)

    def __contains__(self, moment: float) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class PgbenchSummary:
    """What pgbench itself printed, over its whole run (warm-up included)."""

    tps: float
    latency_avg_ms: float
    transactions: int
    failed: int


@dataclass(frozen=True)
class WalUsage:
    """A run's messages and commits (`pg_stat_database.xact_commit` of the bench database) against
    WAL fsyncs (`pg_stat_wal.wal_sync`): ~1 commit per fsync means PostgreSQL's own group commit
    did not help; messages per commit above 1 is the chat service's group commit."""

    messages: int
    commits: int
    wal_syncs: int
    commits_per_wal_sync: float | None
    messages_per_wal_sync: float | None
    messages_per_commit: float | None


@dataclass(frozen=True)
class PathResult:
    path: str
    messages: int
    seconds: float
    msgs_per_s: float
    latency: Latency
    errors: int
    first_error: str | None
    window: Window
    #: Machine-wide CPU use during the window (all cores, other users' work included).
    cpu_busy_pct: float | None = None
    #: CPU time per stored message, in microseconds, by process role over the window: `chat`
    #: (the chat service process), `postgres` (the postmaster and all its children),
    #: `generator` (whatever sends: this process, or pgbench); `chat+generator` when one process
    #: is both (the `service` path).
    cpu_us_per_msg: dict[str, float] | None = None
    wal: WalUsage | None = None
    pgbench_reported: PgbenchSummary | None = None


#: What the service's sends are compared with: pgbench with as many clients as we have callers,
#: and with as many as the chat process has database connections (its pool).
CEILINGS = ("pgbench", "pgbench-pool")
OURS = ("grpc", "grpc-unary", "grpc-stream", "service")
#: Our own floor: the group-commit statement run by pgbench, full batches, nothing in front. Its
#: ratio to pgbench is about as far as a service in front of the statement can go.
BATCH_CEILING = "pgbench-batch"


def throughput_ratio(path: PathResult, ceiling: PathResult) -> float:
    return round(path.msgs_per_s / ceiling.msgs_per_s, 3)


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    conversations: int
    concurrency: int
    #: By path name: grpc (the headline), service, pgbench, pgbench-pool, pgbench-batch.
    paths: dict[str, PathResult]
    #: "grpc/pgbench" (the headline ratio), "grpc/pgbench-pool", "service/pgbench", ...,
    #: "pgbench-batch/pgbench" (the floor's), "grpc/pgbench-batch" (what our layers keep of it).
    ratios: dict[str, float]


def scenario_result(
    scenario: Scenario, concurrency: int, paths: Sequence[PathResult]
) -> ScenarioResult:
    by_name = {p.path: p for p in paths}
    pairs = [(ours, ceiling) for ours in (*OURS, BATCH_CEILING) for ceiling in CEILINGS]
    pairs += [(ours, BATCH_CEILING) for ours in OURS]
    ratios = {
        f"{ours}/{ceiling}": throughput_ratio(by_name[ours], by_name[ceiling])
        for ours, ceiling in pairs
    }
    return ScenarioResult(scenario.name, scenario.conversations, concurrency, by_name, ratios)


def window_result(
    path: str, samples: Iterable[Sample], window: Window, errors: int, first_error: str | None
) -> PathResult:
    """Throughput and latency of the completions inside `window` (latency per completion: per
    batch where a sample is one)."""
    inside = [s for s in samples if s.completed_at in window]
    if not inside:
        raise BenchError(f"{path}: nothing completed in the measurement window ({first_error})")
    latencies = [s.latency_ms for s in inside]
    messages = sum(s.messages for s in inside)
    seconds = window.end - window.start
    return PathResult(
        path=path,
        messages=messages,
        seconds=round(seconds, 3),
        msgs_per_s=round(messages / seconds, 1),
        latency=summarize_latencies(latencies),
        errors=errors,
        first_error=first_error,
        window=window,
    )


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 2) if denominator > 0 else None


def wal_usage(messages: int, commits: int, wal_syncs: int) -> WalUsage:
    return WalUsage(
        messages=messages,
        commits=commits,
        wal_syncs=wal_syncs,
        commits_per_wal_sync=_ratio(commits, wal_syncs),
        messages_per_wal_sync=_ratio(messages, wal_syncs),
        messages_per_commit=_ratio(messages, commits),
    )
