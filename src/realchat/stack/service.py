"""RealChat's own processes as stack components: started with the stack's environment, ready
when their /readyz says so."""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from realchat.stack.component import ComponentNotReadyError, component_log
from realchat.stack.process import ProcessSpec


@dataclass
class Service:
    """`python -m realchat <command>` as a component of the stack."""

    name: str
    command: tuple[str, ...]
    state_dir: Path
    address: str
    ops_url: str
    env: Mapping[str, str] = field(default_factory=dict)
    #: SIGTERM drains: in-flight requests and batches finish first.
    stop_signal: signal.Signals = signal.SIGTERM
    stop_grace_s: float = 35.0

    @property
    def log_path(self) -> Path:
        return component_log(self.state_dir, self.name)

    def prepare(self) -> None:
        pass

    def process_spec(self) -> ProcessSpec:
        return ProcessSpec(
            argv=[sys.executable, "-m", "realchat", *self.command],
            log_path=self.log_path,
            env=dict(self.env),
        )

    async def probe(self) -> None:
        timeout = aiohttp.ClientTimeout(total=2)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{self.ops_url}/readyz") as response,
            ):
                if response.status != 200:
                    raise ComponentNotReadyError(f"/readyz answered {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ComponentNotReadyError(f"/readyz unreachable: {exc}") from exc
