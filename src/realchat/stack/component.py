"""What the supervisor needs from each kind of process it runs."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Protocol

import aiohttp

from realchat.stack.process import ProcessSpec


class ComponentNotReadyError(Exception):
    """A readiness probe failed; the message says what was seen."""


async def expect_http_ok(url: str) -> None:
    """A probe: GET `url` answers 200 within 2 s, else ComponentNotReadyError."""
    timeout = aiohttp.ClientTimeout(total=2)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as reply:
            if reply.status != 200:
                raise ComponentNotReadyError(f"{url} answered {reply.status}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ComponentNotReadyError(f"{url} unreachable: {exc}") from exc


def component_log(state_dir: Path, name: str) -> Path:
    """Where a component's output goes: one file per component under the stack's state dir."""
    return state_dir / "logs" / f"{name}.log"


class ListensLocally:
    """What the stack's single-process components share: they listen on `host:port` and log to
    `component_log(state_dir, name)`. A mixin: each component is its own dataclass and declares
    these fields itself."""

    state_dir: Path
    host: str
    port: int
    name: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return component_log(self.state_dir, self.name)


class Component(Protocol):
    """One process of the stack.

    `prepare` is idempotent and cheap the second time (first start formats storage, later starts
    reuse it). `probe` succeeds only when the component really serves requests; it is polled, so
    it must not sleep or wait long itself.
    """

    @property
    def name(self) -> str: ...

    @property
    def address(self) -> str: ...

    @property
    def log_path(self) -> Path: ...

    @property
    def stop_signal(self) -> signal.Signals:
        """The signal that asks for a clean, prompt shutdown."""
        ...

    @property
    def stop_grace_s(self) -> float:
        """How long a clean shutdown may take before SIGKILL."""
        ...

    def prepare(self) -> None: ...

    def process_spec(self) -> ProcessSpec: ...

    async def probe(self) -> None: ...
