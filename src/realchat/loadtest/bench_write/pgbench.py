"""The ceilings, pgbench on the same database in the same run with nothing in front of it (no
gRPC, no Python, no pool): the statement a send was before group commit, one message per
transaction; and the group-commit statement itself, a full batch per transaction (what
PostgreSQL alone does with our writes: about as far as a service in front of it can go)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from realchat.chat.store import SESSION_SETTINGS, batch_statement
from realchat.events.topics import MESSAGE_CREATED
from realchat.loadtest.bench_write.database import BENCH_DATABASE
from realchat.loadtest.bench_write.driver import BenchContext
from realchat.loadtest.bench_write.results import (
    BenchError,
    PathResult,
    PgbenchSummary,
    Sample,
    Window,
    window_result,
)
from realchat.loadtest.bench_write.scenarios import (
    CONTENT,
    CONVERSATION_PREFIX,
    USER_PREFIX,
    Scenario,
    indexed_uuid_sql,
)
from realchat.stack.postgres import SUPERUSER, Postgres

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


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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


#: Sends per transaction of the `pgbench-batch` path: a full call of the bench's 64 callers (the
#: gathered path's batches reach ~63 sends).
PGBENCH_BATCH_SENDS = 64


def _array_sql(element_sql: str, sends: int) -> str:
    return f"array(SELECT {element_sql} FROM generate_series(1, {sends}) AS g)::text"


def pgbench_batch_script(conversations: int, outbox_shards: int, members: int, sends: int) -> str:
    """The group-commit statement (`chat.store.batch_statement`) as a pgbench script: `sends`
    sends to random conversations from random members, their arrays computed by a query in the
    same transaction (`\\gset`) and bound as parameters, as the service binds them."""
    conversation = f"floor(random() * {conversations})::int"
    arrays = {
        1: _array_sql(indexed_uuid_sql(CONVERSATION_PREFIX, conversation), sends),
        2: _array_sql(indexed_uuid_sql(USER_PREFIX, f"floor(random() * {members})::int"), sends),
        3: _array_sql(sql_literal(CONTENT), sends),
        4: _array_sql("gen_random_uuid()::text", sends),
        5: _array_sql(f"g % {outbox_shards}", sends),
        6: _array_sql("'{}'::jsonb", sends),
    }
    columns = ", ".join(f"{sql} AS a{n}" for n, sql in arrays.items())
    statement = batch_statement(one_conversation=conversations == 1).strip()
    statement = re.sub(
        r"\$(\d+)",
        lambda m: f"(:a{m[1]})" if int(m[1]) in arrays else sql_literal(MESSAGE_CREATED),
        statement,
    )
    return f"BEGIN;\nSELECT {columns} \\gset\n{statement};\nCOMMIT;\n"


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


def parse_pgbench_log(lines: Iterable[str], messages: int = 1) -> tuple[list[Sample], int]:
    """pgbench's per-transaction log (`client_id transaction_no time script_no time_epoch time_us
    ...`, time in microseconds, the epoch pair = completion) as samples of `messages` each, plus
    failed ones."""
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
        samples.append(Sample(completed_at, int(fields[2]) / 1000, messages))
    return samples, failed


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


#: The chat service's session settings (its generic plan), for the connections that run its
#: statement.
SERVICE_SESSION = " ".join(f"-c {name}={value}" for name, value in SESSION_SETTINGS.items())


async def _run_pgbench(
    argv: list[str], password: str, timeout_s: float, pids: dict[str, int], options: str
) -> str:
    env = {
        **os.environ,
        "PGPASSWORD": password,
        "PGAPPNAME": "realchat-bench-pgbench",
        "PGOPTIONS": options,
    }
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


def read_pgbench_logs(log_prefix: Path, messages: int) -> tuple[list[Sample], int]:
    """Every thread's log (`<prefix>.<pid>`, `<prefix>.<pid>.<thread>`) as one list."""
    samples: list[Sample] = []
    failed = 0
    for log in sorted(log_prefix.parent.glob(f"{log_prefix.name}.*")):
        found, failures = parse_pgbench_log(log.read_text().splitlines(), messages)
        samples.extend(found)
        failed += failures
    return samples, failed


async def run_pgbench(
    ctx: BenchContext, scenario: Scenario, *, path: str, clients: int
) -> PathResult:
    """A ceiling: the single-message statement, same window, straight into PostgreSQL from
    `clients` connections."""
    text = pgbench_script(scenario.conversations, ctx.settings.chat.outbox_shards)
    return await _run_script(ctx, scenario, path, text, clients=clients, messages=1, options="")


async def run_pgbench_batch(ctx: BenchContext, scenario: Scenario, *, path: str) -> PathResult:
    """Our own floor: the group-commit statement with full batches, from as many connections as
    the service keeps batches in flight."""
    chat = ctx.settings.chat
    sends = PGBENCH_BATCH_SENDS
    text = pgbench_batch_script(scenario.conversations, chat.outbox_shards, ctx.concurrency, sends)
    clients = chat.group_commit_max_inflight
    return await _run_script(
        ctx, scenario, path, text, clients=clients, messages=sends, options=SERVICE_SESSION
    )


async def _run_script(
    ctx: BenchContext,
    scenario: Scenario,
    path: str,
    text: str,
    *,
    clients: int,
    messages: int,
    options: str,
) -> PathResult:
    script = ctx.workdir / f"{scenario.name}-{path}.sql"
    script.write_text(text)
    log_prefix = ctx.workdir / f"{scenario.name}-{path}-log"
    # One extra second: the window starts at the first completion, not at pgbench's start.
    duration = math.ceil(ctx.warmup_s + ctx.seconds) + 1
    postgres = ctx.stack.postgres
    argv = pgbench_argv(postgres, BENCH_DATABASE, script, log_prefix, clients, duration)
    output = await _run_pgbench(argv, postgres.password, duration + 120, ctx.pids, options)
    samples, failed = read_pgbench_logs(log_prefix, messages)
    if not samples:
        raise BenchError(f"pgbench completed no transaction:\n{output}")
    window = Window.after_warmup(min(s.completed_at for s in samples), ctx.warmup_s, ctx.seconds)
    result = window_result(path, samples, window, failed, None)
    return replace(result, pgbench_reported=parse_pgbench_summary(output))
