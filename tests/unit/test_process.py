import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realchat.stack import process
from realchat.stack.process import ProcessSpec, describe_exit


def test_spawned_process_logs_to_its_file_and_stops_cleanly(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "echo.log"
    code = "import time; print('hello', flush=True); time.sleep(60)"
    child = process.spawn(ProcessSpec([sys.executable, "-c", code], log_path=log))
    pid = child.pid
    deadline = time.monotonic() + 10
    while "hello" not in process.tail(log) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.tail(log) == "hello"
    assert process.is_alive(pid)
    assert process.stop(pid, grace_s=5)
    assert not process.is_alive(pid)
    assert child.poll() is not None


def test_stop_escalates_to_sigkill_when_the_process_ignores_the_signal(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    log = tmp_path / "stubborn.log"
    child = process.spawn(ProcessSpec([sys.executable, "-c", code], log_path=log))
    pid = child.pid
    deadline = time.monotonic() + 10
    while "ready" not in process.tail(log) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.stop(pid, sig=signal.SIGTERM, grace_s=0.5) is False
    assert not process.is_alive(pid)
    child.wait(timeout=5)


def test_tail_of_missing_log_says_so(tmp_path: Path) -> None:
    assert process.tail(tmp_path / "nope.log") == "(no log yet)"


@pytest.mark.parametrize(
    ("returncode", "said"),
    [
        (-signal.SIGSEGV, "killed by SIGSEGV"),
        (-signal.SIGKILL, "killed by SIGKILL"),
        (0, "exited with status 0"),
        (3, "exited with status 3"),
        (-200, "killed by signal 200"),
    ],
)
def test_an_exit_is_described_by_its_signal_or_status(returncode: int, said: str) -> None:
    assert describe_exit(returncode) == said


def test_a_crash_in_a_service_leaves_a_traceback_in_its_output() -> None:
    """What every service does at start (`enable_crash_tracebacks`), then a real SIGSEGV."""
    code = (
        "import os, signal\n"
        "from realchat.runner import enable_crash_tracebacks\n"
        "enable_crash_tracebacks()\n"
        "def deep_in_the_service():\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
        "deep_in_the_service()\n"
    )
    crashed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert crashed.returncode == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in crashed.stderr
    assert "deep_in_the_service" in crashed.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_a_process_spawned_for_a_user_runs_as_that_user_and_keeps_its_pid(tmp_path: Path) -> None:
    log = tmp_path / "id.log"
    script = 'echo "$(id -u) $(id -g) $(id -G) $$"'  # id -G: every group, the primary one too
    child = process.spawn(ProcessSpec(["/bin/sh", "-c", script], log_path=log, user="nobody"))
    assert child.wait(timeout=30) == 0
    nobody = pwd.getpwnam("nobody")
    assert process.tail(log) == f"{nobody.pw_uid} {nobody.pw_gid} {nobody.pw_gid} {child.pid}"
