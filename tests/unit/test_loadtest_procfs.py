"""procfs parsing shared by the load test's server sampler and the benchmarks' CPU accounting."""

from __future__ import annotations

import os

from realchat.loadtest.procfs import (
    PAGE_SIZE,
    ProcStat,
    parse_machine_ticks,
    parse_pid_stat,
    proc_table,
    process_tree,
)


def test_pid_stat_fields_are_counted_after_the_command_name() -> None:
    # 52 fields; the name holds a space and a parenthesis. utime 7, stime 3, cutime 20, cstime 5,
    # rss 300 pages.
    rest = ["S", "42"] + ["0"] * 9 + ["7", "3", "20", "5"] + ["0"] * 6 + ["300"] + ["0"] * 28
    stat = parse_pid_stat("1234 (post gres: x) " + " ".join(rest) + "\n")
    assert stat == ProcStat(ppid=42, own=10, reaped=25, rss_pages=300)
    assert stat.ticks == 35
    assert stat.rss_bytes == 300 * PAGE_SIZE


def test_machine_ticks_leave_idle_and_iowait_out_of_busy_and_guest_out_of_total() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    text = "cpu  100 5 20 300 40 1 2 3 50 7\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    assert parse_machine_ticks(text) == (131, 471)
    assert parse_machine_ticks("cpu  10 0 0 30\n") == (10, 40)  # no iowait column


def test_a_process_tree_holds_the_root_and_its_descendants_only() -> None:
    table = {
        pid: ProcStat(ppid=ppid, own=0, reaped=0, rss_pages=0)
        for pid, ppid in {10: 1, 11: 10, 12: 11, 13: 1, 14: 13}.items()
    }
    assert sorted(process_tree(table, 10)) == [10, 11, 12]
    assert process_tree(table, 99) == []


def test_this_process_is_in_the_table_under_its_parent() -> None:
    table = proc_table()
    assert table[os.getpid()].ppid == os.getppid()
    assert os.getpid() in process_tree(table, os.getppid())
