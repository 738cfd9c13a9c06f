"""CPU time and memory of processes and of the whole machine, read from procfs: the one place the
benchmarks and the load test parse /proc (answered from kernel memory, so reading it never
blocks an event loop)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the tools need (times in clock ticks)."""

    ppid: int
    #: utime + stime: the process itself (all its threads).
    own: int
    #: cutime + cstime: its children that exited and were waited for.
    reaped: int
    rss_pages: int

    @property
    def ticks(self) -> int:
        """Its own CPU and its reaped children's: summed over a process tree, short-lived
        children (PostgreSQL's backends) count once, whether they still run or not."""
        return self.own + self.reaped

    @property
    def rss_bytes(self) -> int:
        return self.rss_pages * PAGE_SIZE


def parse_pid_stat(text: str) -> ProcStat:
    """/proc/<pid>/stat; the command name (field 2) may hold spaces and parentheses, so fields
    are counted from its closing parenthesis."""
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21)
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return ProcStat(
        ppid=int(fields[1]), own=utime + stime, reaped=cutime + cstime, rss_pages=int(fields[21])
    )


def read_pid_stat(pid: int) -> ProcStat:
    """Raises OSError (or ValueError) for a process that is not there (yet, or any more)."""
    return parse_pid_stat(Path(f"/proc/{pid}/stat").read_text())


def parent_of(pid: int) -> int:
    return read_pid_stat(pid).ppid


def proc_table() -> dict[int, ProcStat]:
    """Every process, by pid (one scan of /proc: costly on a busy machine, see `live_children`)."""
    table: dict[int, ProcStat] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            table[int(entry.name)] = read_pid_stat(int(entry.name))
        except (OSError, ValueError):
            continue  # exited meanwhile
    return table


def process_tree(table: dict[int, ProcStat], root: int) -> list[int]:
    """`root` and all its descendants that are in `table`."""
    children: dict[int, list[int]] = {}
    for pid, stat in table.items():
        children.setdefault(stat.ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


def live_children(pid: int) -> list[int]:
    """The live children of a single-threaded process. The kernel lists them in
    /proc/<pid>/task/<pid>/children; without it, every process is looked at: on a busy machine
    that scan cost the bench process (whose CPU is the generator's) ~18 % of its samples."""
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
    return [int(child) for child in listed.split()]


def parse_machine_ticks(text: str) -> tuple[int, int]:
    """(busy, total) jiffies of all cores from the `cpu` line of /proc/stat; idle and iowait
    are the not-busy ones."""
    fields = [int(v) for v in text.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])  # guest time is already counted in user time
    return total - idle, total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores so far."""
    return parse_machine_ticks(Path("/proc/stat").read_text())
