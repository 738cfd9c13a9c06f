"""`realchat bench write`: send throughput and latency, with pgbench as the ceiling.

Why pgbench: before group commit a send was one SQL statement (`SINGLE_MESSAGE_SQL`) under the
conversation's row lock. pgbench runs that very statement with nothing in front of it (no gRPC, no
Python, no pool), on the same database in the same run, so `ours / pgbench` says how far batching
takes the service beyond one statement per transaction. Two scenarios bracket real traffic: one
hot conversation (every writer queues on one row lock, each commit waits for its own WAL fsync)
and 1,000 conversations (writers rarely meet and their commits share fsyncs).

Each scenario measures these paths, one after the other, on freshly truncated tables: `grpc` (the
real `realchat chat-service` process, called through the gateway's own chat client, which
gathers concurrent sends into SendMessageBatch calls: the headline figure), `grpc-unary` (one
SendMessage call per send), `grpc-stream` (SendMessages, one stream per caller), `service`
(`ChatService.send_message` in this process: the cost without the transport), `pgbench` and
`pgbench-pool`. All run a closed loop with the same number of callers; only completions inside
the same measurement window (after a warm-up) count.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc
import uvloop
from pydantic import SecretStr

from realchat.chat.rpc import internal_metadata
from realchat.chat.service import ChatService
from realchat.chat.store import SESSION_SETTINGS, ChatStore
from realchat.chat.v1 import chat_pb2, chat_pb2_grpc
from realchat.config import Settings
from realchat.events.topics import MESSAGE_CREATED
from realchat.gateway.chat_client import ChatClient
from realchat.stack import process
from realchat.stack.component import ComponentNotReadyError
from realchat.stack.postgres import SUPERUSER, Postgres
from realchat.stack.service import Service
from realchat.stack.supervisor import Stack
from realchat.storage.migrations import migrate_database
from realchat.storage.pool import create_pool

Reporter = Callable[[str], None]

BENCH_DATABASE = "realchat_bench"
#: The stack component whose process definition the bench chat server copies.
CHAT_COMPONENT = "chat"
DEFAULT_SECONDS = 15.0
DEFAULT_CONCURRENCY = 64
DEFAULT_OUTPUT = Path("reports/bench-write.json")
#: Discarded start of every run: connections, prepared statements and caches warm up.
WARMUP_S = 2.0
#: A typical short chat message. No ':' in it: pgbench would read `:word` as a variable.
CONTENT = "Hello! A short chat message, about the length people usually type."
#: Deterministic ids, computable in SQL too, so pgbench addresses the rows we seeded.
CONVERSATION_PREFIX = "c0000000"
USER_PREFIX = "a0000000"
_UUID_MIDDLE = "-0000-4000-8000-"
CALL_TIMEOUT_S = 30.0
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
#: Backends publish their WAL statistics when they exit or go idle; give them this long.
STATS_SETTLE_S = 1.5


#: The ceiling: one message, one statement, one transaction, as the chat service wrote it before
#: group commit (issue 17). pgbench runs it with nothing in front of it.
SINGLE_MESSAGE_SQL = """
WITH bump AS (
    UPDATE conversations
       SET last_seq = last_seq + 1
     WHERE id = $1::uuid
       AND EXISTS (SELECT 1 FROM conversation_members
                    WHERE conversation_id = $1::uuid AND user_id = $2::uuid)
 RETURNING last_seq
), message AS (
    -- clock_timestamp(), not now(): taken under the row lock, so created_at follows seq.
    INSERT INTO messages (id, conversation_id, seq, sender_id, content, idempotency_key, created_at)
    SELECT gen_random_uuid(), $1::uuid, bump.last_seq, $2::uuid, $3::text, $4::text,
           clock_timestamp()
      FROM bump
 RETURNING id, conversation_id, seq, sender_id, content, created_at
), event AS (
    INSERT INTO outbox (shard, topic, event_type, partition_key, payload, trace_context)
    SELECT $5::int, $6::text, $6::text, $1::text,
           convert_to(jsonb_build_object(
               'event_id', gen_random_uuid(),
               'conversation_id', message.conversation_id,
               'seq', message.seq,
               'message_id', message.id,
               'sender_id', message.sender_id,
               'content', message.content,
               'created_at', message.created_at
           )::text, 'UTF8'),
           $7::jsonb
      FROM message
 RETURNING id
)
SELECT message.* FROM message, event
"""


class BenchError(RuntimeError):
    """The benchmark cannot run or produced nothing trustworthy; the message says why."""


@dataclass(frozen=True)
class Scenario:
    name: str
    conversations: int


SCENARIOS = (Scenario("hot-1", 1), Scenario("spread-1000", 1000))


# -- pure helpers ---------------------------------------------------------------------------------


def indexed_uuid(prefix: str, index: int) -> uuid.UUID:
    """The `index`-th bench conversation or user (decimal digits are valid hex)."""
    return uuid.UUID(f"{prefix}{_UUID_MIDDLE}{index:012d}")


def indexed_uuid_sql(prefix: str, index_sql: str) -> str:
    """`indexed_uuid` as a SQL expression of an integer expression."""
    return f"('{prefix}{_UUID_MIDDLE}' || lpad(({index_sql})::text, 12, '0'))::uuid"


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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
    """One completed send: when it completed (Unix time, like pgbench's log) and how long it
    took."""

    completed_at: float
    latency_ms: float


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


def throughput_ratio(path: PathResult, ceiling: PathResult) -> float:
    return round(path.msgs_per_s / ceiling.msgs_per_s, 3)


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    conversations: int
    concurrency: int
    #: By path name: grpc (the headline), service, pgbench, pgbench-pool.
    paths: dict[str, PathResult]
    #: "grpc/pgbench" (the headline ratio), "grpc/pgbench-pool", "service/pgbench", ...
    ratios: dict[str, float]


def scenario_result(
    scenario: Scenario, concurrency: int, paths: Sequence[PathResult]
) -> ScenarioResult:
    by_name = {p.path: p for p in paths}
    ratios = {
        f"{ours}/{ceiling}": throughput_ratio(by_name[ours], by_name[ceiling])
        for ours in OURS
        for ceiling in CEILINGS
    }
    return ScenarioResult(scenario.name, scenario.conversations, concurrency, by_name, ratios)


def window_result(
    path: str, samples: Iterable[Sample], window: Window, errors: int, first_error: str | None
) -> PathResult:
    """Throughput and latency of the completions inside `window`."""
    latencies = [s.latency_ms for s in samples if s.completed_at in window]
    if not latencies:
        raise BenchError(f"{path}: nothing completed in the measurement window ({first_error})")
    seconds = window.end - window.start
    return PathResult(
        path=path,
        messages=len(latencies),
        seconds=round(seconds, 3),
        msgs_per_s=round(len(latencies) / seconds, 1),
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


@dataclass(frozen=True)
class CpuSample:
    at: float
    busy: int
    total: int
    #: CPU ticks used so far by each process role (see `PathResult.cpu_us_per_msg`).
    roles: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the benchmark needs (times in clock ticks)."""

    ppid: int
    #: utime + stime: the process itself (all its threads).
    own: int
    #: cutime + cstime: its children that exited and were waited for.
    reaped: int


def parse_pid_stat(text: str) -> ProcStat:
    """/proc/<pid>/stat; the command name (field 2) may hold spaces and parentheses, so fields
    are counted from its closing parenthesis."""
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based overall.
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return ProcStat(ppid=int(fields[1]), own=utime + stime, reaped=cutime + cstime)


def cpu_us_per_message(
    samples: Sequence[CpuSample], window: Window, msgs_per_s: float, ticks_per_s: int
) -> dict[str, float] | None:
    """Each role's CPU time between the first and last samples inside `window`, divided by the
    messages completed meanwhile (at the window's rate)."""
    inside = [s for s in samples if s.at in window]
    if len(inside) < 2 or msgs_per_s <= 0:
        return None
    first, last = inside[0], inside[-1]
    messages = msgs_per_s * (last.at - first.at)
    if messages <= 0:
        return None
    return {
        role: round((last.roles[role] - first.roles[role]) / ticks_per_s * 1e6 / messages, 1)
        for role in last.roles
        if role in first.roles
    }


def parse_proc_stat(text: str, at: float) -> CpuSample:
    """The all-cores `cpu` line of /proc/stat; idle and iowait are the not-busy jiffies."""
    fields = [int(v) for v in text.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])  # guest time is already counted in user time
    return CpuSample(at=at, busy=total - idle, total=total)


def cpu_busy_pct(samples: Sequence[CpuSample], window: Window) -> float | None:
    """Busy share of all cores between the first and last samples inside `window`."""
    inside = [s for s in samples if s.at in window]
    if len(inside) < 2 or inside[-1].total == inside[0].total:
        return None
    busy = inside[-1].busy - inside[0].busy
    return round(100 * busy / (inside[-1].total - inside[0].total), 1)


def pgbench_script(conversations: int, outbox_shards: int) -> str:
    """`SINGLE_MESSAGE_SQL` as a pgbench script: the same statement, its parameters computed in SQL
    from pgbench variables (a random conversation; the sender is the client's own user)."""
    conversation = ":conv"
    values = {
        1: indexed_uuid_sql(CONVERSATION_PREFIX, conversation),
        2: indexed_uuid_sql(USER_PREFIX, ":client_id"),
        3: sql_literal(CONTENT),
        4: "gen_random_uuid()::text",
        # Same shard count, not the same hash (pgbench has no crc32): the cost is the same.
        5: f"({conversation})::int % {outbox_shards}",
        6: sql_literal(MESSAGE_CREATED),
        7: sql_literal("{}"),
    }
    statement = re.sub(r"\$(\d+)", lambda m: f"({values[int(m[1])]})", SINGLE_MESSAGE_SQL.strip())
    return f"\\set conv random(0, {conversations - 1})\n{statement};\n"


_PGBENCH_SUMMARY = {
    "tps": re.compile(r"^tps = ([\d.]+)", re.MULTILINE),
    "latency_avg_ms": re.compile(r"^latency average = ([\d.]+) ms", re.MULTILINE),
    "transactions": re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE),
    "failed": re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE),
}


def parse_pgbench_summary(text: str) -> PgbenchSummary:
    """pgbench's closing report. The last `tps` line wins (older versions print two, the last one
    without connection time); `failed` is absent before PostgreSQL 15."""
    found = {key: pattern.findall(text) for key, pattern in _PGBENCH_SUMMARY.items()}
    missing = [key for key in ("tps", "latency_avg_ms", "transactions") if not found[key]]
    if missing:
        raise BenchError(f"unexpected pgbench output, no {', '.join(missing)}:\n{text}")
    return PgbenchSummary(
        tps=float(found["tps"][-1]),
        latency_avg_ms=float(found["latency_avg_ms"][-1]),
        transactions=int(found["transactions"][-1]),
        failed=int(found["failed"][-1]) if found["failed"] else 0,
    )


def parse_pgbench_log(lines: Iterable[str]) -> tuple[list[Sample], int]:
    """pgbench's per-transaction log (`client_id transaction_no time script_no time_epoch time_us
    ...`, time in microseconds, the epoch pair = completion) as samples, plus failed ones."""
    samples: list[Sample] = []
    failed = 0
    for line in lines:
        fields = line.split()
        if len(fields) < 6:
            continue
        if not fields[2].isdigit():  # "failed" (or "skipped" with a rate limit)
            failed += 1
            continue
        completed_at = int(fields[4]) + int(fields[5]) / 1e6
        samples.append(Sample(completed_at=completed_at, latency_ms=int(fields[2]) / 1000))
    return samples, failed


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


# -- the bench database ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _connection(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def recreate_database(postgres: Postgres, name: str) -> str:
    """Drop and recreate the bench database with the shipped schema, so runs are comparable."""
    async with _connection(postgres.dsn("postgres")) as admin:
        quoted = await admin.fetchval("SELECT quote_ident($1)", name)
        await admin.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    await postgres.ensure_database(name)
    dsn = postgres.dsn(name)
    await migrate_database(dsn)
    return dsn


async def seed(dsn: str, conversations: int, users: int) -> None:
    """`conversations` conversations, each with the same `users` members (the callers): the
    recipients list in every outbox payload has the same size in both scenarios."""
    conversation = indexed_uuid_sql(CONVERSATION_PREFIX, "c")
    async with _connection(dsn) as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO conversations (id, title, created_by) "
            f"SELECT {conversation}, 'bench ' || c, {indexed_uuid_sql(USER_PREFIX, '0')} "
            "FROM generate_series(0, $1::int - 1) AS c",
            conversations,
        )
        await conn.execute(
            "INSERT INTO conversation_members (conversation_id, user_id) "
            f"SELECT {conversation}, {indexed_uuid_sql(USER_PREFIX, 'u')} "
            "FROM generate_series(0, $1::int - 1) AS c, generate_series(0, $2::int - 1) AS u",
            conversations,
            users,
        )


_RESET = (
    "TRUNCATE messages, message_changes, outbox",
    "UPDATE conversations SET last_seq = 0, last_change = 0",
    "VACUUM ANALYZE conversations, conversation_members",
    # So that no run pays for the previous run's dirty pages.
    "CHECKPOINT",
)


async def reset(dsn: str) -> None:
    """Empty tables and a clean checkpoint before every run: each path starts from the same
    state."""
    async with _connection(dsn) as conn:
        for statement in _RESET:
            await conn.execute(statement)


async def wal_syncs(dsn: str) -> int:
    """WAL fsyncs of the whole cluster so far (other databases are idle during a run)."""
    async with _connection(dsn) as conn:
        value: int = await conn.fetchval("SELECT wal_sync FROM pg_stat_wal")
        return value


async def commits(dsn: str) -> int:
    """Transactions committed in the bench database so far (flushed statistics)."""
    async with _connection(dsn) as conn:
        value: int = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return value


async def postmaster_pid(dsn: str) -> int:
    """The PostgreSQL server's main process: the parent of our own backend."""
    async with _connection(dsn) as conn:
        backend: int = await conn.fetchval("SELECT pg_backend_pid()")
        return _parent_of(backend)  # while the backend lives


def _parent_of(pid: int) -> int:
    return parse_pid_stat(Path(f"/proc/{pid}/stat").read_text()).ppid


async def stored_messages(dsn: str) -> int:
    async with _connection(dsn) as conn:
        value: int = await conn.fetchval("SELECT count(*) FROM messages")
        return value


async def server_facts(dsn: str) -> dict[str, str]:
    """The PostgreSQL settings that shape write throughput, recorded with the numbers."""
    names = ("server_version", "synchronous_commit", "fsync", "wal_sync_method", "shared_buffers")
    async with _connection(dsn) as conn:
        return {name: str(await conn.fetchval(f"SHOW {name}")) for name in names}


# -- the closed loop ------------------------------------------------------------------------------

#: Send one message as caller `worker` to the conversation with index `conversation`.
SendOne = Callable[[int, int], Awaitable[None]]


@dataclass
class _Tally:
    samples: list[Sample]
    errors: int = 0
    first_error: str | None = None


async def closed_loop(
    send: SendOne, *, workers: int, conversations: int, warmup_s: float, seconds: float
) -> tuple[_Tally, Window]:
    """`workers` callers, each sending its next message as soon as the last one is answered,
    until the measurement window closes."""
    window = Window.after_warmup(time.time(), warmup_s, seconds)
    tally = _Tally(samples=[])

    async def caller(worker: int) -> None:
        rng = random.Random(worker)
        while time.time() < window.end:
            began = time.perf_counter()
            try:
                await send(worker, rng.randrange(conversations))
            except Exception as exc:  # counted and reported, the run goes on
                tally.errors += 1
                tally.first_error = tally.first_error or repr(exc)
                continue
            latency_ms = (time.perf_counter() - began) * 1000
            tally.samples.append(Sample(completed_at=time.time(), latency_ms=latency_ms))

    await asyncio.gather(*(caller(w) for w in range(workers)))
    return tally, window


# -- the three paths ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchContext:
    stack: Stack
    dsn: str
    concurrency: int
    seconds: float
    warmup_s: float
    workdir: Path
    report: Reporter
    #: The PostgreSQL server process, whose process tree is the `postgres` CPU role.
    postmaster: int
    #: role -> pid of the processes of the path being measured (filled as they start).
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.stack.app_settings

    @property
    def users(self) -> list[uuid.UUID]:
        return [indexed_uuid(USER_PREFIX, i) for i in range(self.concurrency)]

    def conversation_ids(self, scenario: Scenario) -> list[str]:
        return [str(indexed_uuid(CONVERSATION_PREFIX, i)) for i in range(scenario.conversations)]


async def _drive(ctx: BenchContext, path: str, scenario: Scenario, send: SendOne) -> PathResult:
    tally, window = await closed_loop(
        send,
        workers=ctx.concurrency,
        conversations=scenario.conversations,
        warmup_s=ctx.warmup_s,
        seconds=ctx.seconds,
    )
    return window_result(path, tally.samples, window, tally.errors, tally.first_error)


def _free_ports(count: int) -> list[int]:
    """Ports free right now, held together while asked for so they differ."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


async def _wait_ready(server: Service, child: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if child.poll() is not None:
            raise BenchError(f"bench chat server exited; {process.failure_report(server.log_path)}")
        try:
            await server.probe()
        except ComponentNotReadyError as exc:
            if time.monotonic() > deadline:
                raise BenchError(f"bench chat server not ready: {exc}") from exc
            await asyncio.sleep(0.2)
        else:
            return


@contextlib.asynccontextmanager
async def bench_chat_server(ctx: BenchContext) -> AsyncIterator[str]:
    """The dev stack's own chat process definition (command, settings), run a second time on the
    bench database and free ports; stopped (SIGTERM, drained) afterwards."""
    chat = next(s for s in ctx.stack.services() if s.name == CHAT_COMPONENT)
    grpc_port, ops_port = _free_ports(2)
    server = replace(
        chat,
        name="bench-chat",
        address=f"{ctx.settings.chat.grpc_host}:{grpc_port}",
        ops_url=f"http://{ctx.settings.ops_host}:{ops_port}",
        env={
            **chat.env,
            "REALCHAT_DATABASE__URL": ctx.dsn,
            "REALCHAT_CHAT__GRPC_PORT": str(grpc_port),
            "REALCHAT_CHAT__OPS_PORT": str(ops_port),
        },
    )
    child = process.spawn(server.process_spec())
    ctx.pids["chat"] = child.pid
    try:
        await _wait_ready(server, child, timeout_s=30.0)
        yield server.address
    finally:
        await asyncio.to_thread(
            process.stop, child.pid, sig=server.stop_signal, grace_s=server.stop_grace_s
        )
        await asyncio.to_thread(child.wait, 10)


async def run_grpc(ctx: BenchContext, scenario: Scenario) -> PathResult:
    """The headline path: the gateway's own chat client (`ChatClient.send`), whose concurrent
    sends share SendMessageBatch calls, over one gRPC channel."""
    conversation_ids = ctx.conversation_ids(scenario)
    users = ctx.users
    ctx.pids["generator"] = os.getpid()
    async with bench_chat_server(ctx) as target, grpc.aio.insecure_channel(target) as channel:
        client = ChatClient(channel, ctx.stack.internal_token, timeout_s=CALL_TIMEOUT_S)

        async def send(worker: int, conversation: int) -> None:
            await client.send(users[worker], conversation_ids[conversation], _key(), CONTENT)

        return await _drive(ctx, "grpc", scenario, send)


async def run_grpc_unary(ctx: BenchContext, scenario: Scenario) -> PathResult:
    """One SendMessage call per send (how the gateway called the chat service before)."""
    conversation_ids = ctx.conversation_ids(scenario)
    token = ctx.stack.internal_token
    metadata = [internal_metadata(token, user) for user in ctx.users]
    ctx.pids["generator"] = os.getpid()
    async with bench_chat_server(ctx) as target, grpc.aio.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)

        async def send(worker: int, conversation: int) -> None:
            request = chat_pb2.SendMessageRequest(
                conversation_id=conversation_ids[conversation],
                client_msg_id=_key(),
                content=CONTENT,
            )
            await stub.SendMessage(request, metadata=metadata[worker], timeout=CALL_TIMEOUT_S)

        return await _drive(ctx, "grpc-unary", scenario, send)


#: A prefix of this run's client_msg_ids, each made unique by a counter: cheaper than a UUID per
#: send (os.urandom and formatting took ~7 % of the generator's samples), and the generator's
#: CPU is counted as the gateway's share.
_RUN_KEY = uuid.uuid4().hex
_SEND_NUMBERS = itertools.count()


def _key() -> str:
    return f"{_RUN_KEY}-{next(_SEND_NUMBERS)}"


async def run_grpc_stream(ctx: BenchContext, scenario: Scenario) -> PathResult:
    """SendMessages: each caller keeps one stream open and sends over it, one send in flight
    at a time (the same closed loop), so gRPC's per-call cost is paid once per caller."""
    conversation_ids = ctx.conversation_ids(scenario)
    token = ctx.stack.internal_token
    ctx.pids["generator"] = os.getpid()
    async with bench_chat_server(ctx) as target, grpc.aio.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        streams = [stub.SendMessages(metadata=internal_metadata(token, user)) for user in ctx.users]

        async def send(worker: int, conversation: int) -> None:
            request = chat_pb2.SendMessagesRequest(
                send=chat_pb2.SendMessageRequest(
                    conversation_id=conversation_ids[conversation],
                    client_msg_id=_key(),
                    content=CONTENT,
                )
            )
            await streams[worker].write(request)
            response = await streams[worker].read()
            if not isinstance(response, chat_pb2.SendMessagesResponse):
                raise BenchError(f"stream {worker} ended: {await streams[worker].code()}")
            if response.HasField("error"):
                raise BenchError(f"send failed: {response.error.code}")

        try:
            return await _drive(ctx, "grpc-stream", scenario, send)
        finally:
            for stream in streams:
                stream.cancel()


async def run_service(ctx: BenchContext, scenario: Scenario) -> PathResult:
    """`ChatService.send_message` in this process, on a pool like the chat process's."""
    conversation_ids = ctx.conversation_ids(scenario)
    users = ctx.users
    database = ctx.settings.database.model_copy(update={"url": SecretStr(ctx.dsn)})
    ctx.pids["chat+generator"] = os.getpid()
    pool = await create_pool(database, "realchat-bench", SESSION_SETTINGS)
    try:
        chat = ctx.settings.chat
        service = ChatService(ChatStore(pool, chat.outbox_shards), chat.max_members)

        async def send(worker: int, conversation: int) -> None:
            await service.send_message(
                users[worker], conversation_ids[conversation], _key(), CONTENT
            )

        return await _drive(ctx, "service", scenario, send)
    finally:
        await pool.close()


def pgbench_argv(
    postgres: Postgres, database: str, script: Path, log_prefix: Path, clients: int, seconds: int
) -> list[str]:
    threads = max(1, min(clients, os.cpu_count() or 1))
    return [
        "pgbench",
        *("-n", "-M", "prepared", "-c", str(clients), "-j", str(threads), "-T", str(seconds)),
        *("-f", str(script), "-l", f"--log-prefix={log_prefix}"),
        *("-h", postgres.host, "-p", str(postgres.port), "-U", SUPERUSER, database),
    ]


async def _run_pgbench(
    argv: list[str], password: str, timeout_s: float, pids: dict[str, int]
) -> str:
    env = {**os.environ, "PGPASSWORD": password, "PGAPPNAME": "realchat-bench-pgbench"}
    child = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    pids["generator"] = child.pid
    try:
        stdout, stderr = await asyncio.wait_for(child.communicate(), timeout_s)
    except (TimeoutError, asyncio.CancelledError) as exc:
        # Timed out or interrupted: pgbench must not go on loading the database unwatched.
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        if isinstance(exc, TimeoutError):
            raise BenchError(f"pgbench did not finish within {timeout_s:.0f}s") from None
        raise
    if child.returncode != 0:
        raise BenchError(f"pgbench failed ({child.returncode}): {stderr.decode().strip()}")
    return stdout.decode()


def read_pgbench_logs(log_prefix: Path) -> tuple[list[Sample], int]:
    """Every thread's log (`<prefix>.<pid>`, `<prefix>.<pid>.<thread>`) as one list."""
    samples: list[Sample] = []
    failed = 0
    for log in sorted(log_prefix.parent.glob(f"{log_prefix.name}.*")):
        found, failures = parse_pgbench_log(log.read_text().splitlines())
        samples.extend(found)
        failed += failures
    return samples, failed


async def run_pgbench(
    ctx: BenchContext, scenario: Scenario, *, path: str, clients: int
) -> PathResult:
    """A ceiling: the same statement, same window, straight into PostgreSQL from `clients`
    connections."""
    script = ctx.workdir / f"{scenario.name}.sql"
    script.write_text(pgbench_script(scenario.conversations, ctx.settings.chat.outbox_shards))
    log_prefix = ctx.workdir / f"{scenario.name}-{path}-log"
    # One extra second: the window starts at the first completion, not at pgbench's start.
    duration = math.ceil(ctx.warmup_s + ctx.seconds) + 1
    postgres = ctx.stack.postgres
    argv = pgbench_argv(postgres, BENCH_DATABASE, script, log_prefix, clients, duration)
    output = await _run_pgbench(argv, postgres.password, duration + 120, ctx.pids)
    samples, failed = read_pgbench_logs(log_prefix)
    if not samples:
        raise BenchError(f"pgbench completed no transaction:\n{output}")
    window = Window.after_warmup(min(s.completed_at for s in samples), ctx.warmup_s, ctx.seconds)
    result = window_result(path, samples, window, failed, None)
    return replace(result, pgbench_reported=parse_pgbench_summary(output))


#: The roles whose CPU includes their children's (PostgreSQL: one process per connection).
TREE_ROLES = frozenset({"postgres"})


def _ticks(pid: int, tree: bool) -> int | None:
    """CPU ticks of a process (and, for a tree, of its live and its reaped children)."""
    try:
        stat = parse_pid_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError):
        return None  # not started yet, or gone
    if not tree:
        return stat.own
    total = stat.own + stat.reaped
    for child_pid in _children(pid):
        with contextlib.suppress(OSError, ValueError):
            child = parse_pid_stat(Path(f"/proc/{child_pid}/stat").read_text())
            if child.ppid == pid:
                total += child.own
    return total


def _children(pid: int) -> list[int]:
    """The live children of a single-threaded process. The kernel lists them in
    /proc/<pid>/task/<pid>/children; without it, every process is looked at: on a busy machine
    that scan cost the bench process (whose CPU is the generator's) ~18 % of its samples."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
    return [int(child) for child in listed.split()]


def _read_cpu(pids: dict[str, int]) -> CpuSample:
    # procfs: answered from kernel memory, it never blocks the event loop.
    machine = parse_proc_stat(Path("/proc/stat").read_text(), time.time())
    roles = {role: _ticks(pid, role in TREE_ROLES) for role, pid in list(pids.items())}
    found = {role: ticks for role, ticks in roles.items() if ticks is not None}
    return replace(machine, roles=found)


async def sample_cpu(
    samples: list[CpuSample], pids: dict[str, int], interval_s: float = 0.5
) -> None:
    """Until cancelled: machine-wide busy share (CPU- or fsync-bound?) and each role's CPU."""
    while True:
        samples.append(_read_cpu(pids))
        await asyncio.sleep(interval_s)


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
    per_msg = cpu_us_per_message(cpu, result.window, result.msgs_per_s, _TICKS_PER_S)
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
    ]
    return scenario_result(scenario, ctx.concurrency, paths)


# -- the command ----------------------------------------------------------------------------------


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
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "pgbench": _pgbench_version(),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
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


def write_json(report: BenchReport, output: Path) -> None:
    """Atomically, so a crashed run never leaves half a file as the 'latest numbers'."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    tmp.write_text(report.to_json())
    os.replace(tmp, output)


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
    write_json(result, output)
    report("")
    report(render_table(result.scenarios, os.cpu_count()))
    report(f"results written to {output}")
    return 0
