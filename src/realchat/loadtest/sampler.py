"""Server-side figures during a load test: RSS and CPU of every stack process (its whole process
tree: PostgreSQL's backends, the JVM's threads), machine CPU, Kafka consumer lag and connections
from the gateways' `/metrics`, outbox backlog from the publisher's, PostgreSQL lock waits from
`pg_stat_activity` / `pg_locks`.

Asyncio task counts: no RealChat process exports one, so the report says so instead of guessing.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from realchat.loadtest.procfs import CLOCK_TICKS_PER_S, machine_ticks, proc_table, process_tree

LOCK_WAITS_SQL = """
SELECT
  (SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock') AS waiting,
  (SELECT count(*) FROM pg_locks WHERE NOT granted) AS not_granted
"""

#: Summed over every scraped endpoint (gauges of several gateways add up).
METRICS = {
    "kafka_lag": "realchat_gateway_kafka_lag",
    "gateway_connections": "realchat_gateway_active_connections",
    "outbox_pending": "realchat_outbox_pending_count",
    "outbox_oldest_age_s": "realchat_outbox_oldest_pending_age_seconds",
    "slow_consumer_disconnects": "realchat_gateway_slow_consumer_disconnects_total",
}
TASK_METRICS = ("asyncio_tasks", "realchat_asyncio_tasks")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text: the sum of the samples of each metric name (labels summed over)."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            sums[name] = sums.get(name, 0.0) + float(value)
    return sums


@dataclass
class ServerSampler:
    #: Component name -> pid (stack processes and the load generator's own workers).
    pids: dict[str, int]
    #: Component name -> its /metrics URL.
    metrics_urls: dict[str, str]
    dsn: str | None = None
    _last: dict[str, tuple[float, int]] = field(default_factory=dict)
    _machine: tuple[int, int] | None = None
    _db: asyncpg.Connection | None = None
    tasks_exposed: bool = False

    async def start(self) -> None:
        if self.dsn:
            try:
                self._db = await asyncpg.connect(self.dsn, timeout=5)
            except (OSError, asyncpg.PostgresError) as exc:
                print(f"loadtest: no PostgreSQL lock sampling ({exc})", flush=True)
        self.sample_processes()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()

    def cpu_seconds(self) -> dict[str, float]:
        """Component -> CPU seconds its process tree has used so far (for `cost.cpu_cost`)."""
        table = proc_table()
        found = {}
        for name, pid in self.pids.items():
            tree = process_tree(table, pid)
            if tree:
                found[name] = sum(table[p].ticks for p in tree) / CLOCK_TICKS_PER_S
        return found

    def sample_processes(self) -> dict[str, Any]:
        now = time.monotonic()
        table = proc_table()
        processes: dict[str, Any] = {}
        for name, pid in self.pids.items():
            tree = process_tree(table, pid)
            if not tree:
                continue
            ticks = sum(table[p].ticks for p in tree)
            rss = sum(table[p].rss_bytes for p in tree)
            entry: dict[str, Any] = {"rss_mb": round(rss / 2**20, 1)}
            if (last := self._last.get(name)) is not None and now > last[0]:
                entry["cpu_pct"] = round(
                    (ticks - last[1]) / CLOCK_TICKS_PER_S / (now - last[0]) * 100, 1
                )
            self._last[name] = (now, ticks)
            processes[name] = entry
        busy, total = machine_ticks()
        machine = None
        if self._machine is not None and total > self._machine[1]:
            machine = round((busy - self._machine[0]) / (total - self._machine[1]) * 100, 1)
        self._machine = (busy, total)
        return {"processes": processes, "machine_cpu_pct": machine}

    async def sample(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        sample: dict[str, Any] = {"t": time.time(), **self.sample_processes()}
        totals: dict[str, float] = {}
        tasks: dict[str, float] = {}
        for name, url in self.metrics_urls.items():
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as reply:
                    parsed = parse_metrics(await reply.text())
            except (aiohttp.ClientError, OSError, TimeoutError):
                continue
            for key, metric in METRICS.items():
                if metric in parsed:
                    totals[key] = totals.get(key, 0.0) + parsed[metric]
            for metric in TASK_METRICS:
                if metric in parsed:
                    tasks[name] = parsed[metric]
        sample.update(totals)
        if tasks:
            self.tasks_exposed = True
            sample["asyncio_tasks"] = tasks
        if self._db is not None:
            try:
                row = await self._db.fetchrow(LOCK_WAITS_SQL, timeout=2)
                if row is not None:
                    sample["pg_lock_waits"] = int(row["waiting"])
                    sample["pg_locks_not_granted"] = int(row["not_granted"])
            except (OSError, asyncpg.PostgresError, TimeoutError):
                pass
        return sample
