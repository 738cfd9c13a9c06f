"""`realchat stack` as a user runs it: up in the foreground, Ctrl-C, detach, status, down.

Each run uses its own state dir and free ports, so it does not touch the suite's test stack.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realchat.stack.process import is_alive
from tests.support.stacks import settings_env, throwaway_settings

pytestmark = pytest.mark.slow


def cli_env(state_dir: Path) -> dict[str, str]:
    return {**os.environ, **settings_env(throwaway_settings(state_dir))}


def realchat(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "realchat", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def status(env: dict[str, str]) -> list[dict[str, object]]:
    result = realchat(env, "stack", "status", "--json")
    return list(json.loads(result.stdout))


def wait_healthy(env: dict[str, str], timeout_s: float = 120) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        components = status(env)
        if components and all(c["healthy"] for c in components):
            return components
        time.sleep(0.5)
    raise AssertionError(f"stack not healthy: {status(env)}")


def assert_all_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(is_alive(p) for p in pids):
        time.sleep(0.2)
    assert [p for p in pids if is_alive(p)] == []


def test_foreground_up_then_ctrl_c_leaves_nothing_running(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "stack")
    up = subprocess.Popen(
        [sys.executable, "-m", "realchat", "stack", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert up.stdout is not None
        lines = []
        for line in up.stdout:
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        assert any("RealChat stack is up" in line for line in lines), "".join(lines)
        components = wait_healthy(env, timeout_s=30)
        assert {c["name"] for c in components} == {
            "postgres",
            "redis",
            "kafka",
            "auth-service",
            "chat",
            "outbox-publisher",
            "presence",
            "gateway",
        }
        pids = [int(str(c["pid"])) for c in components]
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        realchat(env, "stack", "down")  # leave nothing behind even when the test fails
    assert up.returncode == 0, output
    assert "nothing left running" in output
    assert_all_gone(pids)
    assert not (tmp_path / "stack" / "stack.json").exists()


def test_detached_stack_reports_status_and_stops_with_down(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "stack")
    up = realchat(env, "stack", "up", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        components = wait_healthy(env, timeout_s=30)
        pids = [int(str(c["pid"])) for c in components]
        text = realchat(env, "stack", "status")
        assert text.returncode == 0
        assert text.stdout.count("healthy") == len(components) == 8
        # Every component keeps its log in the one run directory.
        assert {Path(str(c["log"])).parent for c in components} == {tmp_path / "stack" / "logs"}
    finally:
        down = realchat(env, "stack", "down")
    assert down.returncode == 0, down.stderr
    assert_all_gone(pids)
    after = realchat(env, "stack", "status")
    assert after.returncode == 1
    assert "stopped" in after.stdout


def test_a_component_that_cannot_start_is_named_with_its_log(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "stack")
    with socket.socket() as squatter:  # something else already holds Kafka's port
        squatter.bind(("127.0.0.1", int(env["REALCHAT_STACK__KAFKA_PORT"])))
        squatter.listen()
        up = realchat(env, "stack", "up", "--detach")
    assert up.returncode == 1
    assert "kafka exited while starting" in up.stdout
    assert "Address already in use" in up.stdout
    after = status(env)
    assert after
    assert not any(c["running"] for c in after)


def test_ctrl_c_during_start_up_still_stops_everything(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "stack")
    up = subprocess.Popen(
        [sys.executable, "-m", "realchat", "stack", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert up.stdout is not None
    pids = []
    for line in up.stdout:
        if "starting (pid" in line:
            pids.append(int(line.split("pid ")[1].split(",")[0]))
        if len(pids) == 3:  # the infrastructure is starting; the services are not yet
            break
    up.send_signal(signal.SIGINT)
    try:
        output, _ = up.communicate(timeout=90)
    finally:
        realchat(env, "stack", "down")  # leave nothing behind even when the test fails
    assert up.returncode == 130, output
    assert_all_gone(pids)
