"""CPU accounting from procfs: the machine's busy share, and the CPU time of each process role
(chat service, PostgreSQL's process tree, the load generator) per stored message."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from realchat.loadtest.bench_write.results import Window

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


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


def parent_of(pid: int) -> int:
    return parse_pid_stat(Path(f"/proc/{pid}/stat").read_text()).ppid
