"""`realchat stack` as a user runs it: up in the foreground, Ctrl-C, detach, status, down.

Each run uses its own state dir and free ports, so it does not touch the suite's test stack.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realchat.config import Settings
from realchat.stack.postgres import Postgres
from realchat.stack.process import is_alive
from tests.support.leftovers import alive, listening_ports, process_tree, unbindable
from tests.support.ports import free_port_block
from tests.support.stacks import settings_env, throwaway_settings

pytestmark = pytest.mark.slow


def cli_env(state_dir: Path) -> dict[str, str]:
    return {**os.environ, **settings_env(throwaway_settings(state_dir))}


def realchat(
    env: dict[str, str], *args: str, timeout_s: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "realchat", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
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


def by_name(components: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(c["name"]): c for c in components}


def assert_all_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(is_alive(p) for p in pids):
        time.sleep(0.2)
    assert [p for p in pids if is_alive(p)] == []


def assert_nothing_left(processes: set[int], ports: set[int]) -> None:
    """Every process of the stack (children and process groups included) is gone, and a new
    server could listen on each of its ports."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(processes):
        time.sleep(0.2)
    assert alive(processes) == []
    assert unbindable(ports) == []


def foreground_up(env: dict[str, str]) -> subprocess.Popen[str]:
    """`realchat stack up` in the foreground, as `make run` runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "realchat", "stack", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def until_up(up: subprocess.Popen[str]) -> list[str]:
    """Its output up to "press Ctrl-C" (the stack is up and watched)."""
    assert up.stdout is not None
    lines = []
    for line in up.stdout:
        lines.append(line)
        if "press Ctrl-C" in line:
            break
    return lines


def core_ports(settings: Settings) -> set[int]:
    """Ports any stack of these settings listens on: checks that the port scan sees them."""
    stack = settings.stack
    return {stack.postgres_port, stack.redis_port, stack.kafka_port, settings.http.port}


def test_foreground_up_then_ctrl_c_leaves_nothing_running(tmp_path: Path) -> None:
    """Two gateways behind HAProxy, and Prometheus (on a free port) when the machine has it."""
    settings = throwaway_settings(tmp_path / "stack", gateways=2)
    env = {**os.environ, **settings_env(settings)}
    with_prometheus = shutil.which("prometheus") is not None
    if with_prometheus:
        env["REALCHAT_STACK__PROMETHEUS"] = "true"
        env["REALCHAT_STACK__PROMETHEUS_PORT"] = str(free_port_block(offsets=(0,)))
    up = foreground_up(env)
    try:
        lines = until_up(up)
        assert any("RealChat stack is up" in line for line in lines), "".join(lines)
        # Where PostgreSQL keeps its data is printed when it is not in the state dir.
        postgres = Postgres(settings.stack.state_dir, "127.0.0.1", 0, "realchat")
        told = [line for line in lines if "PostgreSQL data in" in line]
        assert len(told) == int(postgres.in_fallback), "".join(lines)
        if postgres.in_fallback:
            assert str(postgres.data_dir) in told[0]
        components = wait_healthy(env, timeout_s=30)
        assert {c["name"] for c in components} == {
            "postgres",
            "redis",
            "kafka",
            "auth-service",
            "chat",
            "outbox-publisher",
            "presence",
            "gateway-1",
            "gateway-2",
            "balancer",
            *(["prometheus"] if with_prometheus else []),
        }
        processes = process_tree(int(str(c["pid"])) for c in components)
        ports = listening_ports(processes)
        assert core_ports(settings) <= ports
        if with_prometheus:
            assert int(env["REALCHAT_STACK__PROMETHEUS_PORT"]) in ports
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        realchat(env, "stack", "down")  # leave nothing behind even when the test fails
    assert up.returncode == 0, output
    assert "nothing left running" in output
    assert_nothing_left(processes, ports)
    assert not (tmp_path / "stack" / "stack.json").exists()


def test_a_service_that_dies_is_named_with_its_signal_and_reaped(tmp_path: Path) -> None:
    """A crash (SIGSEGV) and a SIGKILL, as `make run` (the foreground `stack up`) sees them: its
    output and `stack status` name the signal, the SIGSEGV leaves the faulthandler's traceback in
    the service's log, and neither stays a zombie under the supervisor."""
    env = cli_env(tmp_path / "stack")
    up = foreground_up(env)
    try:
        until_up(up)
        components = by_name(wait_healthy(env, timeout_s=30))
        crashed = {"gateway": signal.SIGSEGV, "presence": signal.SIGKILL}
        pids = {name: int(str(components[name]["pid"])) for name in crashed}
        for name, sig in crashed.items():
            os.kill(pids[name], sig)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = by_name(status(env))
            if all(
                now[name]["detail"] != "not running" and not now[name]["running"]
                for name in crashed
            ):
                break
            time.sleep(0.5)
        for name, sig in crashed.items():
            assert now[name]["detail"] == f"not running: killed by {sig.name}", now[name]
            assert not Path(f"/proc/{pids[name]}").exists(), f"{name} was not reaped"
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        realchat(env, "stack", "down")
    assert "gateway    exited unexpectedly (killed by SIGSEGV)" in output, output
    assert "presence   exited unexpectedly (killed by SIGKILL)" in output, output
    gateway_log = Path(str(components["gateway"]["log"])).read_text(errors="replace")
    assert "Fatal Python error: Segmentation fault" in gateway_log
    assert "Current thread" in gateway_log or "Thread 0x" in gateway_log


@pytest.mark.timeout(900)
def test_the_shape_given_at_up_is_remembered_by_status_kill_start_and_down(
    tmp_path: Path,
) -> None:
    settings = throwaway_settings(tmp_path / "stack", kafka_nodes=3)  # ports free for 3 nodes
    # Only the flag asks for 3 nodes: the later commands have nothing else to go by.
    env = {**os.environ, **settings_env(settings), "REALCHAT_STACK__KAFKA_NODES": "1"}
    kafka = {"kafka-1", "kafka-2", "kafka-3"}
    up = realchat(env, "stack", "up", "--detach", "--kafka-nodes", "3", timeout_s=600)
    processes: set[int] = set()
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        components = by_name(wait_healthy(env, timeout_s=60))
        assert kafka <= set(components)
        assert "kafka" not in components
        processes |= process_tree(int(str(c["pid"])) for c in components.values())

        kill = realchat(env, "stack", "kill", "kafka-2")
        assert kill.returncode == 0, kill.stdout + kill.stderr
        after = by_name(status(env))
        assert not after["kafka-2"]["running"]
        assert after["kafka-2"]["pid"] is None
        assert after["kafka-1"]["healthy"]
        assert after["kafka-3"]["healthy"]

        start = realchat(env, "stack", "start", "kafka-2", timeout_s=300)
        assert start.returncode == 0, start.stdout + start.stderr
        back = by_name(wait_healthy(env, timeout_s=120))
        assert kafka <= set(back)
        processes |= process_tree(int(str(c["pid"])) for c in back.values())
        ports = listening_ports(processes)
        kafka_ports = {settings.stack.kafka_port + 10 * n for n in range(3)}
        assert kafka_ports <= ports
    finally:
        down = realchat(env, "stack", "down", timeout_s=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert {"kafka-1 ", "kafka-2 ", "kafka-3 "} <= {line[:8] for line in down.stdout.splitlines()}
    assert_nothing_left(processes, ports)


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
    up = foreground_up(env)
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
