"""Server-side accounting of one measured window, from /proc: CPU (utime + stime) and RSS per
group of processes, and how busy the whole machine was.

A group is what the report names (`gateways`, `haproxy`, `centrifugo`, `chat`, `client`, ...):
root pids, each with or without its descendants (PostgreSQL's backends are its postmaster's
children; the bench process's children are the servers it runs, which are groups of their own).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

from realchat.loadtest import cost
from realchat.loadtest.procfs import CLOCK_TICKS_PER_S, machine_ticks, proc_table, process_tree


@dataclass(frozen=True)
class Group:
    pids: tuple[int, ...]
    #: Count every descendant too (a server's worker processes), or the roots alone.
    children: bool = True


@dataclass(frozen=True)
class Snapshot:
    at: float
    #: Group -> CPU seconds consumed so far (user + system).
    cpu_s: dict[str, float]
    #: Group -> resident memory in bytes.
    rss: dict[str, int]
    machine_busy: int
    machine_total: int


def snapshot(groups: Mapping[str, Group]) -> Snapshot:
    table = proc_table()
    cpu: dict[str, float] = {}
    rss: dict[str, int] = {}
    for name, group in groups.items():
        pids: set[int] = set()
        for root in group.pids:
            pids.update(process_tree(table, root) if group.children else [root])
        present = [p for p in pids if p in table]
        cpu[name] = sum(table[p].ticks for p in present) / CLOCK_TICKS_PER_S
        rss[name] = sum(table[p].rss_bytes for p in present)
    busy, total = machine_ticks()
    return Snapshot(time.monotonic(), cpu, rss, busy, total)


def idle_rates(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds per second each group burns with nothing published (timers, heartbeats)."""
    seconds = after.at - before.at
    if seconds <= 0:
        raise ValueError("idle window of no length")
    return cost.idle_rates(before.cpu_s, after.cpu_s, seconds)


@dataclass(frozen=True)
class GroupCpu:
    cpu_s: float
    #: `cpu_s` less what the group burns idle over as long a window.
    busy_cpu_s: float
    #: Microseconds per delivery (per message for the components a delivery does not touch).
    us_per_delivery: float | None
    us_per_delivery_busy: float | None
    us_per_message: float | None
    us_per_message_busy: float | None
    cores: float


def _per(seconds: float, count: int) -> float | None:
    return round(seconds / count * 1e6, 2) if count > 0 else None


def group_cpu(
    before: Snapshot,
    after: Snapshot,
    idle: Mapping[str, float],
    deliveries: int,
    messages: int,
) -> dict[str, GroupCpu]:
    """Each group's CPU over the window, raw and with its idle rate subtracted, per delivery and
    per published message."""
    window = after.at - before.at
    found: dict[str, GroupCpu] = {}
    for name, end in after.cpu_s.items():
        used = end - before.cpu_s.get(name, end)
        busy = max(0.0, used - idle.get(name, 0.0) * window)
        found[name] = GroupCpu(
            cpu_s=round(used, 3),
            busy_cpu_s=round(busy, 3),
            us_per_delivery=_per(used, deliveries),
            us_per_delivery_busy=_per(busy, deliveries),
            us_per_message=_per(used, messages),
            us_per_message_busy=_per(busy, messages),
            cores=round(used / window, 3) if window > 0 else 0.0,
        )
    return found


def cores_busy(before: Snapshot, after: Snapshot, cores: int | None = None) -> float | None:
    """How many of the machine's cores were busy on average (everything: other users too)."""
    total = after.machine_total - before.machine_total
    if total <= 0:
        return None
    share = (after.machine_busy - before.machine_busy) / total
    return round(share * (cores or os.cpu_count() or 1), 2)


def kib_per_connection(base: int, now: int, connections: int) -> float | None:
    """RSS growth over `base` per connection, in KiB."""
    if connections <= 0:
        return None
    return round((now - base) / 1024 / connections, 2)
