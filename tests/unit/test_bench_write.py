"""The pure parts of `realchat bench write`: statistics, pgbench's output, the pgbench script.
(The benchmark itself is slow and needs the dev stack: `make bench-write`, never in the suite.)"""

from __future__ import annotations

import re

import pytest

from realchat.chat.store import batch_statement
from realchat.loadtest.bench_write.cpu import CpuSample, cpu_busy_pct, cpu_us_per_message
from realchat.loadtest.bench_write.pgbench import (
    SINGLE_MESSAGE_SQL,
    parse_pgbench_log,
    parse_pgbench_summary,
    pgbench_batch_script,
    pgbench_script,
)
from realchat.loadtest.bench_write.render import render_table
from realchat.loadtest.bench_write.results import (
    BenchError,
    PathResult,
    Sample,
    Window,
    percentile,
    scenario_result,
    summarize_latencies,
    wal_usage,
    window_result,
)
from realchat.loadtest.bench_write.scenarios import (
    CONVERSATION_PREFIX,
    USER_PREFIX,
    Scenario,
    indexed_uuid,
    indexed_uuid_sql,
)

PGBENCH_15_OUTPUT = """\
pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: /tmp/bench-write-x/hot-1.sql
scaling factor: 1
query mode: prepared
number of clients: 64
number of threads: 2
maximum number of tries: 1
duration: 18 s
number of transactions actually processed: 4045
number of failed transactions: 3 (0.074%)
latency average = 1.932 ms
initial connection time = 52.192 ms
tps = 2070.625477 (without initial connection time)
"""


def test_percentile_is_nearest_rank_so_always_a_real_sample() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0


@pytest.mark.parametrize("q", [0, -1, 100.5])
def test_percentile_rejects_out_of_range_q(q: float) -> None:
    with pytest.raises(ValueError, match="not in"):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_latency_summary_sorts_its_input() -> None:
    summary = summarize_latencies([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (summary.p50_ms, summary.p99_ms, summary.max_ms, summary.mean_ms) == (3, 5, 5, 3)


def test_only_completions_inside_the_window_count() -> None:
    window = Window.after_warmup(started=100.0, warmup_s=2.0, seconds=10.0)
    samples = [
        Sample(completed_at=101.9, latency_ms=500.0),  # warm-up
        Sample(completed_at=102.0, latency_ms=1.0),
        Sample(completed_at=111.9, latency_ms=3.0),
        Sample(completed_at=112.0, latency_ms=900.0),  # after the window
    ]
    result = window_result("grpc", samples, window, errors=0, first_error=None)
    assert result.messages == 2
    assert result.msgs_per_s == 0.2
    assert result.latency.max_ms == 3.0


def test_an_empty_window_fails_loudly() -> None:
    with pytest.raises(BenchError, match="nothing completed"):
        window_result("grpc", [], Window(0.0, 1.0), errors=5, first_error="boom")


def test_pgbench_summary_is_parsed() -> None:
    summary = parse_pgbench_summary(PGBENCH_15_OUTPUT)
    assert summary.tps == pytest.approx(2070.625477)
    assert summary.latency_avg_ms == pytest.approx(1.932)
    assert summary.transactions == 4045
    assert summary.failed == 3


def test_older_pgbench_summary_takes_the_tps_without_connections() -> None:
    text = (
        "number of transactions actually processed: 10\n"
        "latency average = 2.0 ms\n"
        "tps = 400.0 (including connections establishing)\n"
        "tps = 500.0 (excluding connections establishing)\n"
    )
    summary = parse_pgbench_summary(text)
    assert (summary.tps, summary.failed) == (500.0, 0)


def test_unexpected_pgbench_output_is_an_error() -> None:
    with pytest.raises(BenchError, match="no tps, latency_avg_ms"):
        parse_pgbench_summary("number of transactions actually processed: 1\nlatency average = 1")


def test_pgbench_log_gives_completion_times_and_latencies() -> None:
    lines = [
        "1 1 17038 0 1795753966 886761",
        "0 7 failed 0 1795753967 5",
        "",
        "2 3 1484 0 1795753967 500000 0",
    ]
    samples, failed = parse_pgbench_log(lines)
    assert failed == 1
    assert samples == [
        Sample(completed_at=1795753966.886761, latency_ms=17.038),
        Sample(completed_at=1795753967.5, latency_ms=1.484),
    ]


def test_a_batch_transaction_in_pgbench_log_counts_its_messages() -> None:
    samples, failed = parse_pgbench_log(["0 1 20000 0 1795753966 0"], messages=64)
    assert (samples, failed) == ([Sample(1795753966.0, 20.0, 64)], 0)
    window = Window(1795753966.0, 1795753968.0)
    result = window_result("pgbench-batch", samples, window, 0, None)
    assert (result.messages, result.msgs_per_s, result.latency.p50_ms) == (64, 32.0, 20.0)


def test_indexed_ids_are_valid_uuids_that_sql_builds_the_same_way() -> None:
    assert str(indexed_uuid(CONVERSATION_PREFIX, 42)) == "c0000000-0000-4000-8000-000000000042"
    assert indexed_uuid(USER_PREFIX, 0) != indexed_uuid(CONVERSATION_PREFIX, 0)
    expression = indexed_uuid_sql(CONVERSATION_PREFIX, "c")
    assert "'c0000000-0000-4000-8000-' || lpad((c)::text, 12, '0')" in expression


def test_pgbench_script_runs_the_store_statement_with_every_parameter_bound() -> None:
    script = pgbench_script(conversations=1000, outbox_shards=16)
    first, statement = script.split("\n", 1)
    assert first == r"\set conv random(0, 999)"
    assert not re.search(r"\$\d", statement), "every $n is replaced by a pgbench expression"
    # Apart from its parameters, the statement is the store's, character for character.
    pieces = re.split(r"\$\d+", SINGLE_MESSAGE_SQL.strip())
    pattern = r"\(.+?\)".join(re.escape(piece) for piece in pieces) + r";\n"
    assert re.fullmatch(pattern, statement, flags=re.DOTALL)
    assert ":client_id" in statement
    assert "random(0, 0)" in pgbench_script(conversations=1, outbox_shards=16)


def test_pgbench_batch_script_runs_the_service_statement_on_bound_arrays() -> None:
    script = pgbench_batch_script(conversations=1000, outbox_shards=16, members=64, sends=64)
    begin, arrays, statement = script.split("\n", 2)
    assert begin == "BEGIN;"
    assert arrays.startswith("SELECT ")
    assert arrays.endswith(r" \gset")
    assert arrays.count("generate_series(1, 64)") == 6
    assert "random() * 1000" in arrays
    assert "random() * 64" in arrays
    assert "g % 16" in arrays
    assert statement.endswith(";\nCOMMIT;\n")
    # Apart from its parameters, the statement is the service's, character for character: the
    # arrays are bound (`:aN`, prepared parameters), the topic is a literal.
    pieces = re.split(r"\$\d+", batch_statement(one_conversation=False).strip())
    pattern = r"(?:\(:a\d\)|'chat\.message\.created\.v1')".join(map(re.escape, pieces))
    assert re.fullmatch(pattern + r";\nCOMMIT;\n", statement, flags=re.DOTALL)
    one = pgbench_batch_script(conversations=1, outbox_shards=16, members=64, sends=64)
    assert "FOR UPDATE" in statement
    assert "FOR UPDATE" not in one


def test_cpu_busy_share_counts_only_samples_inside_the_window() -> None:
    samples = [
        CpuSample(at=1.0, busy=0, total=0),  # before the window
        CpuSample(at=2.0, busy=100, total=200),
        CpuSample(at=3.0, busy=130, total=300),
        CpuSample(at=9.0, busy=999, total=1099),  # after it
    ]
    assert cpu_busy_pct(samples, Window(2.0, 5.0)) == 30.0
    assert cpu_busy_pct(samples[:2], Window(2.0, 5.0)) is None


def _path(name: str, msgs_per_s: float) -> PathResult:
    latency = summarize_latencies([1.0, 2.0])
    return PathResult(name, 10, 1.0, msgs_per_s, latency, 0, None, Window(0.0, 1.0))


def test_ours_is_compared_with_both_pgbench_ceilings() -> None:
    paths = [
        _path("grpc", 300.0),
        _path("grpc-unary", 150.0),
        _path("grpc-stream", 900.0),
        _path("service", 450.0),
        _path("pgbench", 600.0),
        _path("pgbench-pool", 1200.0),
        _path("pgbench-batch", 1800.0),
    ]
    result = scenario_result(Scenario("hot-1", 1), 64, paths)
    assert result.ratios == {
        "grpc/pgbench": 0.5,
        "grpc/pgbench-pool": 0.25,
        "grpc-unary/pgbench": 0.25,
        "grpc-unary/pgbench-pool": 0.125,
        "grpc-stream/pgbench": 1.5,
        "grpc-stream/pgbench-pool": 0.75,
        "service/pgbench": 0.75,
        "service/pgbench-pool": 0.375,
        "pgbench-batch/pgbench": 3.0,
        "pgbench-batch/pgbench-pool": 1.5,
        "grpc/pgbench-batch": 0.167,
        "grpc-unary/pgbench-batch": 0.083,
        "grpc-stream/pgbench-batch": 0.5,
        "service/pgbench-batch": 0.25,
    }
    table = render_table([result], cores=2)
    assert [line.split()[:3] for line in table.splitlines()[2:9]] == [
        ["hot-1", "grpc", "300.0"],
        ["hot-1", "grpc-unary", "150.0"],
        ["hot-1", "grpc-stream", "900.0"],
        ["hot-1", "service", "450.0"],
        ["hot-1", "pgbench", "600.0"],
        ["hot-1", "pgbench-pool", "1200.0"],
        ["hot-1", "pgbench-batch", "1800.0"],
    ]


def test_cpu_per_message_is_each_roles_time_over_the_messages_in_between() -> None:
    samples = [
        CpuSample(at=1.0, busy=0, total=0, roles={"chat": 0, "postgres": 0}),
        CpuSample(at=2.0, busy=0, total=0, roles={"chat": 10, "postgres": 50}),
        CpuSample(at=4.0, busy=0, total=0, roles={"chat": 110, "postgres": 250, "generator": 9}),
        CpuSample(at=9.0, busy=0, total=0, roles={"chat": 999, "postgres": 999}),
    ]
    # Inside [2, 5): 2 s at 1,000 msgs/s; 100 ticks (1 s at 100 ticks/s) for 2,000 messages.
    per_msg = cpu_us_per_message(samples, Window(2.0, 5.0), 1000.0, ticks_per_s=100)
    assert per_msg == {"chat": 500.0, "postgres": 1000.0}
    assert cpu_us_per_message(samples[:2], Window(2.0, 5.0), 1000.0, 100) is None


def test_wal_usage_separates_messages_commits_and_fsyncs() -> None:
    usage = wal_usage(messages=1000, commits=100, wal_syncs=50)
    assert (usage.commits_per_wal_sync, usage.messages_per_wal_sync) == (2.0, 20.0)
    assert usage.messages_per_commit == 10.0
    assert wal_usage(messages=0, commits=0, wal_syncs=0).messages_per_commit is None
