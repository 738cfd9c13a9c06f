"""RealChat's own processes (`python -m realchat chat-service`, `outbox-publisher`) run by tests.

Each child logs to a file of the test's tmp dir, is waited on through its ops endpoint's
`/readyz` (never a sleep), and is always reaped: stopped with SIGTERM at the end of the block, or
SIGKILLed if it does not drain in time. When the block fails, the tail of the child's log is
printed, so pytest shows it beside the failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from realchat.stack.supervisor import Stack
from tests.support.ports import free_port_block
from tests.support.topics import Received, TopicTail


def free_ports() -> tuple[int, int]:
    """Two free loopback ports (base and base+1)."""
    base = free_port_block(offsets=(0, 1))
    return base, base + 1


def service_env(stack: Stack, database_url: str, **variables: str) -> dict[str, str]:
    """What a `realchat` child needs to reach `stack`, with its own database and any
    `REALCHAT_*` overrides (given without the prefix, e.g. `CHAT__GRPC_PORT="1234"`)."""
    env = stack.environment()
    env["REALCHAT_DATABASE__URL"] = database_url
    env.update({f"REALCHAT_{name}": value for name, value in variables.items()})
    return env


@dataclass
class RealchatProcess:
    """One `python -m realchat <command>` child."""

    command: str
    log_path: Path
    ops_port: int
    popen: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        text = self.log_text().splitlines()[-lines:]
        return f"--- last {len(text)} lines of {self.log_path.name} ---\n" + "\n".join(text)

    def _ready_once(self) -> bool:
        url = f"http://127.0.0.1:{self.ops_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    async def wait_ready(self, timeout_s: float = 60) -> None:
        """Until its `/readyz` answers 200; raise (with the log tail) if it exits or never does."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.returncode is not None:
                raise AssertionError(
                    f"{self.command} exited with {self.returncode} while starting\n{self.tail()}"
                )
            if await asyncio.to_thread(self._ready_once):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.command} not ready after {timeout_s:.0f}s\n{self.tail()}")

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal it now, without waiting (safe to call from a callback)."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    async def wait_exit(self, timeout_s: float) -> int:
        """Its exit status (negative: killed by that signal); raise if it still runs then."""
        deadline = time.monotonic() + timeout_s
        while (code := self.popen.poll()) is None:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{self.command} still running after {timeout_s:.0f}s\n{self.tail()}"
                )
            await asyncio.sleep(0.05)
        return code

    async def stop(self, grace_s: float = 20) -> int:
        """SIGTERM (it drains), then SIGKILL after `grace_s`; return its exit status."""
        self.kill(signal.SIGTERM)
        try:
            return await self.wait_exit(grace_s)
        except AssertionError:
            self.kill(signal.SIGKILL)
            return await self.wait_exit(10)


def start_realchat(
    command: str, env: Mapping[str, str], log_dir: Path, ops_port: int
) -> RealchatProcess:
    """Start `python -m realchat <command>` with only the given `REALCHAT_*` variables."""
    log_dir.mkdir(parents=True, exist_ok=True)
    count = len(list(log_dir.glob(f"{command}-*.log")))
    log_path = log_dir / f"{command}-{count + 1}.log"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("REALCHAT_")}
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "realchat", command],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**inherited, **env},
        )
    return RealchatProcess(command, log_path, ops_port, popen)


@contextlib.asynccontextmanager
async def running_realchat(
    command: str,
    env: Mapping[str, str],
    log_dir: Path,
    ops_port: int,
    *,
    ready: bool = True,
) -> AsyncIterator[RealchatProcess]:
    """A child for the duration of the block (ready first, unless `ready=False`); stopped and
    reaped at the end whatever happens; its log tail printed if the block fails."""
    child = start_realchat(command, env, log_dir, ops_port)
    try:
        if ready:
            await child.wait_ready()
        yield child
    except BaseException:
        print(child.tail(60))
        raise
    finally:
        if child.returncode is None:
            await child.stop()


async def read_until(
    tail: TopicTail,
    done: Callable[[list[Received]], bool],
    timeout_s: float,
) -> list[Received]:
    """Read `tail` (in a worker thread, so the event loop keeps running) until `done(received)`
    holds or `timeout_s` passed; return everything received so far."""
    deadline = time.monotonic() + timeout_s
    while not done(tail.received) and time.monotonic() < deadline:
        await asyncio.to_thread(tail.read, len(tail.received) + 1, 0.5)
    return tail.received
