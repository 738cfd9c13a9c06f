"""`realchat stack` commands without shape flags act on the shape the last `up` recorded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from realchat.cli import build_parser
from realchat.config import Settings, StackSettings
from realchat.stack.command import stack_for
from realchat.stack.state import StackState, saved_shape, with_saved_shape
from realchat.stack.supervisor import StackError


def settings_in(state_dir: Path) -> Settings:
    return Settings(stack=StackSettings(state_dir=state_dir, gateways=1, publishers=1))


def record(state_dir: Path, shape: dict[str, int], running_pid: int | None = None) -> None:
    """What `up` leaves in stack.json (a component entry only when `running_pid` is given)."""
    components = {}
    if running_pid is not None:
        components["redis"] = {"name": "redis", "pid": running_pid, "address": "-", "log": "-"}
    state_dir.mkdir(parents=True, exist_ok=True)
    payload = {"shape": shape, "components": components}
    (state_dir / "stack.json").write_text(json.dumps(payload))


def names(settings: Settings, *argv: str) -> set[str]:
    stack = stack_for(settings, build_parser().parse_args(["stack", *argv]))
    return {c.name for c in stack.components()}


def test_commands_without_flags_use_the_recorded_shape(tmp_path: Path) -> None:
    record(tmp_path, {"kafka_nodes": 3, "gateways": 2, "publishers": 2})
    expected = {"kafka-1", "kafka-2", "kafka-3", "gateway-1", "gateway-2", "balancer"}
    for argv in (["status"], ["down"], ["start", "kafka-2"], ["kill", "kafka-2"]):
        found = names(settings_in(tmp_path), *argv)
        assert expected | {"outbox-publisher-1", "outbox-publisher-2"} <= found, argv
        assert "kafka" not in found


def test_flags_win_and_nothing_recorded_means_the_settings(tmp_path: Path) -> None:
    assert saved_shape(tmp_path) == {}
    assert "kafka" in names(settings_in(tmp_path), "status")
    record(tmp_path, {"kafka_nodes": 3, "gateways": 1, "publishers": 1})
    assert "kafka" in names(settings_in(tmp_path), "status", "--kafka-nodes", "1")


def test_up_refuses_another_shape_while_the_recorded_one_runs(tmp_path: Path) -> None:
    record(tmp_path, {"kafka_nodes": 3, "gateways": 1, "publishers": 1}, running_pid=os.getpid())
    args = build_parser().parse_args(["stack", "up", "--kafka-nodes", "1"])
    with pytest.raises(StackError, match="--kafka-nodes 3"):
        stack_for(settings_in(tmp_path), args)
    same = build_parser().parse_args(["stack", "up", "--kafka-nodes", "3"])
    assert stack_for(settings_in(tmp_path), same).settings.kafka_nodes == 3


def test_tools_attaching_to_a_stack_see_its_recorded_gateways(tmp_path: Path) -> None:
    """A bench that restarts gateways must act on all of them, and must not record a smaller
    shape for the next command: it builds its stack from `with_saved_shape`."""
    record(tmp_path, {"kafka_nodes": 1, "gateways": 6, "publishers": 1})
    attached = with_saved_shape(settings_in(tmp_path))
    assert attached.stack.gateways == 6
    assert with_saved_shape(settings_in(tmp_path), {"gateways": 3}).stack.gateways == 3
    assert with_saved_shape(settings_in(tmp_path / "none")).stack.gateways == 1


def test_only_up_records_a_shape(tmp_path: Path) -> None:
    """A component recorded by a stack object built with another shape (a tool restarting a
    gateway with default settings) keeps the shape `up` recorded."""
    record(tmp_path, {"kafka_nodes": 1, "gateways": 6, "publishers": 1})
    other = StackState(tmp_path, {"kafka_nodes": 1, "gateways": 2, "publishers": 1})
    other.write({})
    assert saved_shape(tmp_path)["gateways"] == 6
    other.remember_shape()
    assert saved_shape(tmp_path)["gateways"] == 2
