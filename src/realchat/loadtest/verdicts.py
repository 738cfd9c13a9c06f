"""The load test's verdicts: a phase's correctness and pass, the run's correctness, what
saturated first, and (soak) whether the run stayed stable.
"""

from __future__ import annotations

from typing import Any

import msgspec

from realchat.loadtest.messages import PhaseDone, Verified
from realchat.loadtest.scenarios import Phase


def phase_correctness(
    verified: list[Verified],
    done: list[PhaseDone],
    changed: dict[str, Any],
    after: dict[str, Any],
    expected: dict[str, int],
    from_database: bool,
) -> dict[str, Any]:
    """What one phase's verification found: losses on the clients, order violations and gaps
    the clients saw, duplicates (`changed`: the phase's counters, `after`: the run's totals)."""
    return {
        "clients": sum(v.clients for v in verified),
        "unverified_clients": sum(v.unverified for v in verified),
        "messages_checked": sum(v.messages_checked for v in verified),
        "lost": sum(v.lost for v in verified),
        "clients_with_loss": sum(v.clients_with_loss for v in verified),
        "loss_examples": [msgspec.to_builtins(e) for v in verified for e in v.examples][:5],
        "order_violations": changed["counts"].get("order_violations", 0),
        "gaps": changed["counts"].get("gaps", 0),
        "duplicate_frames_suppressed": changed["counts"].get("duplicate_frames", 0),
        "duplicates_to_application": after["app_duplicates"],
        "seq_conflicts": after["seq_conflicts"],
        "all_drained": all(d.drained for d in done),
        "stored_messages": sum(expected.values()),
        "last_seq_source": "database and send_ok" if from_database else "send_ok",
    }


def phase_passed(
    correctness: dict[str, Any], live: dict[str, Any], send_ok: int, phase: Phase, p95_ms: float
) -> bool:
    """A phase passes with nothing lost or reordered, live p95 under `p95_ms`, and at least 95 %
    of its target sends acknowledged."""
    return (
        correctness["lost"] == 0
        and correctness["order_violations"] == 0
        and correctness["unverified_clients"] == 0
        and live.get("count", 0) > 0
        and live["p95"] < p95_ms
        and send_ok >= 0.95 * phase.rate * phase.seconds
    )


def run_correctness(results: list[dict[str, Any]], totals: dict[str, Any]) -> dict[str, Any]:
    """The run's correctness: every phase's summed, and whether all of it is clean."""
    keys = (
        "lost",
        "order_violations",
        "unverified_clients",
        "clients_with_loss",
        "gaps",
        "duplicate_frames_suppressed",
    )
    summary = {k: sum(int(r["correctness"][k]) for r in results) for k in keys}
    summary["duplicates_to_application"] = totals["app_duplicates"]
    summary["seq_conflicts"] = totals["seq_conflicts"]
    summary["messages_checked"] = sum(r["correctness"]["messages_checked"] for r in results)
    summary["ok"] = (
        bool(results)
        and summary["lost"] == 0
        and summary["order_violations"] == 0
        and summary["unverified_clients"] == 0
        and summary["duplicates_to_application"] == 0
        and summary["seq_conflicts"] == 0
    )
    return summary


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def saturation(timeline: list[dict[str, Any]], gateways: list[str]) -> dict[str, Any]:
    """Averages over the sending seconds: machine CPU, each process's CPU (% of one core), lock
    waits, lag and backlog; and which of them is the likeliest first limit."""
    sending = [p for p in timeline if p["phase"][:1].isdigit() and p["sent_per_s"] > 0]
    if not sending:
        return {}
    cpu: dict[str, list[float]] = {}
    for p in sending:
        for name, entry in p["server"].get("processes", {}).items():
            if "cpu_pct" in entry:
                cpu.setdefault(name, []).append(entry["cpu_pct"])
    per_process = {n: _mean(v) for n, v in sorted(cpu.items(), key=lambda i: -sum(i[1]))}
    machine = _mean(
        [
            p["server"]["machine_cpu_pct"]
            for p in sending
            if p["server"].get("machine_cpu_pct") is not None
        ]
    )
    locks = _mean([float(p["server"].get("pg_lock_waits", 0)) for p in sending])
    lag = max((float(p["server"].get("kafka_lag", 0)) for p in sending), default=0.0)
    backlog = max((float(p["server"].get("outbox_pending", 0)) for p in sending), default=0.0)
    top = next(iter(per_process), None)
    verdict = []
    if machine is not None and machine >= 90:
        verdict.append(f"the 2 cores: machine CPU {machine}% busy on average")
    if top is not None:
        verdict.append(f"largest CPU user: {top} at {per_process[top]}% of a core")
    if locks and locks >= 1:
        verdict.append(f"PostgreSQL lock waits average {locks}")
    if lag >= 1000:
        verdict.append(f"Kafka consumer lag reached {lag:.0f}")
    if backlog >= 1000:
        verdict.append(f"outbox backlog reached {backlog:.0f}")
    return {
        "machine_cpu_pct": machine,
        "process_cpu_pct": per_process,
        "gateways_cpu_pct": round(sum(per_process.get(g) or 0 for g in gateways), 1),
        "pg_lock_waits_avg": locks,
        "kafka_lag_max": lag,
        "outbox_backlog_max": backlog,
        "verdict": "; ".join(verdict) or "nothing saturated",
    }


def stability(timeline: list[dict[str, Any]], window: int = 600) -> dict[str, Any]:
    """Soak: first and last `window` seconds compared: gateway RSS, Kafka lag, live p99 and
    every process's asyncio task count (a task per connection or request that never ends shows
    as growth here before it shows in RSS)."""
    sending = [p for p in timeline if p["phase"][:1].isdigit()]
    if len(sending) < 4:
        return {"judged": False}
    size = min(window, len(sending) // 3)
    first, last = sending[:size], sending[-size:]

    def rss(points: list[dict[str, Any]]) -> float:
        return sum(
            sum(
                e["rss_mb"]
                for n, e in p["server"].get("processes", {}).items()
                if n.startswith("gateway")
            )
            for p in points
        ) / len(points)

    def metric(points: list[dict[str, Any]], key: str) -> float:
        return sum(float(p["server"].get(key, 0)) for p in points) / len(points)

    def tasks(points: list[dict[str, Any]]) -> float:
        return sum(sum(p["server"].get("asyncio_tasks", {}).values()) for p in points) / len(points)

    rss_first, rss_last = rss(first), rss(last)
    tasks_first, tasks_last = tasks(first), tasks(last)
    lag_first, lag_last = metric(first, "kafka_lag"), metric(last, "kafka_lag")
    lat_first = _mean([p["latency_ms"]["p99"] for p in first if p["latency_ms"].get("count")])
    lat_last = _mean([p["latency_ms"]["p99"] for p in last if p["latency_ms"].get("count")])
    flat_rss = rss_last <= rss_first * 1.10 + 20
    flat_lag = lag_last <= lag_first + 100
    flat_latency = lat_first is None or lat_last is None or lat_last <= lat_first * 1.5 + 20
    flat_tasks = tasks_last <= tasks_first * 1.10 + 20
    return {
        "judged": True,
        "window_s": size,
        "gateway_rss_mb": [round(rss_first, 1), round(rss_last, 1)],
        "kafka_lag": [round(lag_first, 1), round(lag_last, 1)],
        "p99_ms": [lat_first, lat_last],
        "asyncio_tasks": [round(tasks_first, 1), round(tasks_last, 1)],
        "stable": flat_rss and flat_lag and flat_latency and flat_tasks,
    }
