"""CPU accounting over a measured window: the machine's busy share, and the CPU time of each
process role (chat service, PostgreSQL's process tree, the load generator) per stored message."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from realchat.loadtest.bench_write.results import Window
from realchat.loadtest.procfs import live_children, machine_ticks, read_pid_stat


@dataclass(frozen=True)
class CpuSample:
    at: float
    busy: int
    total: int
    #: CPU ticks used so far by each process role (see `PathResult.cpu_us_per_msg`).
    roles: dict[str, int] = field(default_factory=dict)


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


def cpu_busy_pct(samples: Sequence[CpuSample], window: Window) -> float | None:
    """Busy share of all cores between the first and last samples inside `window`."""
    inside = [s for s in samples if s.at in window]
    if len(inside) < 2 or inside[-1].total == inside[0].total:
        return None
    busy = inside[-1].busy - inside[0].busy
    return round(100 * busy / (inside[-1].total - inside[0].total), 1)


TREE_ROLES = frozenset({"postgres"})


def _ticks(pid: int, tree: bool) -> int | None:
    """CPU ticks of a process (and, for a tree, of its live and its reaped children)."""
    try:
        stat = read_pid_stat(pid)
    except (OSError, ValueError):
        return None  # not started yet, or gone
    if not tree:
        return stat.own
    total = stat.ticks
    for child_pid in live_children(pid):
        with contextlib.suppress(OSError, ValueError):
            child = read_pid_stat(child_pid)
            if child.ppid == pid:
                total += child.own
    return total


def _read_cpu(pids: dict[str, int]) -> CpuSample:
    busy, total = machine_ticks()
    at = time.time()
    roles = {role: _ticks(pid, role in TREE_ROLES) for role, pid in list(pids.items())}
    found = {role: ticks for role, ticks in roles.items() if ticks is not None}
    return CpuSample(at=at, busy=busy, total=total, roles=found)


async def sample_cpu(
    samples: list[CpuSample], pids: dict[str, int], interval_s: float = 0.5
) -> None:
    """Until cancelled: machine-wide busy share (CPU- or fsync-bound?) and each role's CPU."""
    while True:
        samples.append(_read_cpu(pids))
        await asyncio.sleep(interval_s)
