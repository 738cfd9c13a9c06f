"""The soak's verdict: first and last windows of the sending phase compared, and no process of
the stack ended during the run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from realchat.loadtest.stackview import StackView
from realchat.loadtest.verdicts import stability
from realchat.stack.state import RunningComponent, StackState


def point(rss_mb: float, tasks: int, p99_ms: float = 40.0, lag: float = 0.0) -> dict[str, Any]:
    return {
        "phase": "1",
        "latency_ms": {"count": 100, "p99": p99_ms},
        "server": {
            "processes": {"gateway-1": {"rss_mb": rss_mb}, "chat": {"rss_mb": 500.0}},
            "kafka_lag": lag,
            "asyncio_tasks": {"gateway-1": tasks, "chat": 30},
        },
    }


def test_a_steady_run_is_stable() -> None:
    verdict = stability([point(200.0, 1000) for _ in range(30)], window=10)
    assert verdict["stable"] is True
    assert verdict["asyncio_tasks"] == [1030.0, 1030.0]


def test_growing_tasks_alone_make_a_run_unstable() -> None:
    timeline = [point(200.0, 1000 + 20 * n) for n in range(30)]
    verdict = stability(timeline, window=10)
    assert verdict["stable"] is False
    assert verdict["gateway_rss_mb"] == [200.0, 200.0]


def test_growing_gateway_memory_makes_a_run_unstable() -> None:
    timeline = [point(200.0 + 10 * n, 1000) for n in range(30)]
    assert stability(timeline, window=10)["stable"] is False


def test_a_run_without_enough_samples_is_not_judged() -> None:
    assert stability([point(200.0, 10)] * 3) == {"judged": False}


def test_a_process_that_ended_during_a_run_is_named_with_how_it_ended(tmp_path: Path) -> None:
    """`StackView.ended`: the stack's recorded exit for a pid the run sampled; a process
    still running is not listed."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    state = StackState(tmp_path, {})
    state.write(
        {
            "chat": RunningComponent("chat", dead.pid, "-", "-", exit="exit status 1"),
            "redis": RunningComponent("redis", os.getpid(), "-", "-"),
        }
    )
    view = StackView(pids={"chat": dead.pid, "redis": os.getpid()}, state_dir=tmp_path)
    assert view.ended() == {"chat": "exit status 1"}
    unrecorded = StackView(pids={"presence": dead.pid}, state_dir=tmp_path)
    assert "not recorded" in unrecorded.ended()["presence"]
