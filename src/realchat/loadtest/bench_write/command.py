"""`realchat bench write`: every scenario on a fresh bench database, the table printed, the
report saved as JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from realchat.config import Settings
from realchat.loadtest.bench_report import machine_facts, write_atomically
from realchat.loadtest.bench_write.database import (
    BENCH_DATABASE,
    postmaster_pid,
    recreate_database,
    seed,
    server_facts,
)
from realchat.loadtest.bench_write.driver import BenchContext, Reporter
from realchat.loadtest.bench_write.measure import run_scenario
from realchat.loadtest.bench_write.render import render_table
from realchat.loadtest.bench_write.results import BenchError, ScenarioResult
from realchat.loadtest.bench_write.scenarios import CONTENT, SCENARIOS
from realchat.stack.component import ComponentNotReadyError
from realchat.stack.supervisor import Stack

#: Discarded start of every run: connections, prepared statements and caches warm up.
WARMUP_S = 2.0


def _pgbench_version() -> str:
    result = subprocess.run(["pgbench", "--version"], capture_output=True, text=True, check=True)
    return result.stdout.strip()


async def _check_ready(stack: Stack, concurrency: int) -> None:
    if not 1 <= concurrency <= 200:
        raise BenchError("--concurrency must be between 1 and 200 (PostgreSQL allows 300 clients)")
    if shutil.which("pgbench") is None:
        raise BenchError("pgbench not found: install postgresql-contrib (`make deps` does)")
    try:
        await stack.postgres.probe()
    except ComponentNotReadyError as exc:
        raise BenchError(
            f"the dev stack's PostgreSQL is not reachable ({exc}); "
            "start it with `realchat stack up --detach` (or run `make bench-write`)"
        ) from exc


@dataclass(frozen=True)
class BenchReport:
    """What one run measured, and on what: the JSON file is this, field for field."""

    timestamp: str
    machine: dict[str, object]
    settings: dict[str, object]
    scenarios: list[ScenarioResult]

    def to_json(self) -> str:
        return json.dumps({"benchmark": "bench-write", **asdict(self)}, indent=2) + "\n"


async def run_bench_write(
    settings: Settings, *, seconds: float, concurrency: int, report: Reporter
) -> BenchReport:
    """Every scenario on a fresh bench database."""
    stack = Stack(settings)
    await _check_ready(stack, concurrency)
    report(f"preparing database {BENCH_DATABASE} ...")
    dsn = await recreate_database(stack.postgres, BENCH_DATABASE)
    # Every pgbench-pool client's user is a member too, even with fewer callers than that.
    members = max(concurrency, settings.database.pool_max_size)
    await seed(dsn, max(s.conversations for s in SCENARIOS), members)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-write-") as workdir:
        postmaster = await postmaster_pid(dsn)
        ctx = BenchContext(
            stack, dsn, concurrency, seconds, WARMUP_S, Path(workdir), report, postmaster
        )
        results = [await run_scenario(ctx, scenario) for scenario in SCENARIOS]
    return BenchReport(
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
        machine={
            **machine_facts(load_before),
            "pgbench": _pgbench_version(),
            "postgres": await server_facts(dsn),
        },
        settings={
            "seconds_per_path": seconds,
            "warmup_s": WARMUP_S,
            "concurrency": concurrency,
            "members_per_conversation": members,
            "content_chars": len(CONTENT),
            "pool_max_size": settings.database.pool_max_size,
            "outbox_shards": settings.chat.outbox_shards,
        },
        scenarios=results,
    )


def bench_write_command(
    settings: Settings, *, seconds: float, concurrency: int, output: Path, report: Reporter
) -> int:
    """`realchat bench write`: run, print the table, save the JSON; 1 with a reason on failure."""
    try:
        result = uvloop.run(
            run_bench_write(settings, seconds=seconds, concurrency=concurrency, report=report)
        )
    except BenchError as exc:
        report(f"error: {exc}")
        return 1
    write_atomically(output, result.to_json())
    report("")
    report(render_table(result.scenarios, os.cpu_count()))
    report(f"results written to {output}")
    return 0
