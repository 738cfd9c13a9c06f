"""What a local stack has running, recorded in `<state_dir>/stack.json`: each component's pid,
address, log and (once reaped) how it ended, and the shape `up` was given, so later commands
(`status`, `start`, `kill`, `down`) see the same components without the flags.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from realchat.config import Settings
from realchat.stack import process
from realchat.stack.component import Component
from realchat.stack.postgres import FINGERPRINT_FILE
from realchat.stack.shape import SHAPE_FIELDS

STATE_FILE = "stack.json"

#: Everything a stack keeps in its state dir (what `reset` deletes; nothing else is touched).
STATE_ENTRIES = (
    "postgres",
    FINGERPRINT_FILE,
    "redis",
    "kafka",
    "prometheus",
    "haproxy",
    "fault-proxy",
    "logs",
    "secrets",
    "stack.json",
    "stack.tmp",
)


@dataclass(frozen=True)
class RunningComponent:
    name: str
    pid: int
    address: str
    log: str
    #: How the process ended (`describe_exit`), once the supervisor that started it reaped it.
    exit: str | None = None


def saved_shape(state_dir: Path) -> dict[str, int]:
    """The shape (Kafka nodes, gateways, publishers) the stack in `state_dir` was brought up
    with, while its stack.json exists (`down` deletes it); empty if none is recorded."""
    try:
        raw = json.loads((state_dir / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    shape = raw.get("shape") or {}
    return {name: int(shape[name]) for name in SHAPE_FIELDS if name in shape}


def with_saved_shape(settings: Settings, flags: dict[str, int] | None = None) -> Settings:
    """`settings` with the shape of the stack in its state dir (what its last `up` recorded),
    `flags` taking precedence: a tool attaching to a running stack sees all its components."""
    overrides = {**saved_shape(settings.stack.state_dir), **(flags or {})}
    if not overrides:
        return settings
    return settings.model_copy(update={"stack": settings.stack.model_copy(update=overrides)})


class StackState:
    """The stack.json of the stack in `state_dir`. Only `up` records the shape
    (`remember_shape`); every other write keeps the one recorded, so a tool that built this
    object with another shape (a restart of one component) cannot rewrite it."""

    def __init__(self, state_dir: Path, shape: dict[str, int]) -> None:
        self.state_dir = state_dir
        self.shape = shape

    @property
    def file(self) -> Path:
        return self.state_dir / STATE_FILE

    def read(self) -> dict[str, RunningComponent]:
        try:
            raw = json.loads(self.file.read_text())
        except FileNotFoundError:
            return {}
        return {name: RunningComponent(**entry) for name, entry in raw["components"].items()}

    def remember_shape(self) -> None:
        """Record this object's shape (at `up`, before anything starts)."""
        self.write(self.read(), shape=self.shape)

    def write(
        self, running: dict[str, RunningComponent], *, shape: dict[str, int] | None = None
    ) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        payload = {
            "shape": shape if shape is not None else saved_shape(self.state_dir) or self.shape,
            "components": {name: asdict(rc) for name, rc in running.items()},
        }
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, self.file)

    def record(self, component: Component, pid: int | None) -> None:
        """Remember `component` as running with `pid`, or forget it (`pid` None)."""
        running = self.read()
        if pid is None:
            running.pop(component.name, None)
        else:
            running[component.name] = RunningComponent(
                component.name, pid, component.address, str(component.log_path)
            )
        self.write(running)

    def record_exit(self, name: str, pid: int, ended: str) -> None:
        """Note how the process `pid` of `name` ended, if it is still the one recorded."""
        running = self.read()
        entry = running.get(name)
        if entry is not None and entry.pid == pid:
            running[name] = replace(entry, exit=ended)
            self.write(running)

    def running_pid(self, name: str) -> int | None:
        entry = self.read().get(name)
        if entry is not None and process.is_alive(entry.pid):
            return entry.pid
        return None

    def any_running(self) -> bool:
        """Whether any process this stack recorded still runs."""
        return any(process.is_alive(entry.pid) for entry in self.read().values())

    def remove(self) -> None:
        self.file.unlink(missing_ok=True)
