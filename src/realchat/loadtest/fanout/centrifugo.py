"""Centrifugo, the peer: built once from the Go module proxy, configured, run, published to.

Pinned to one version so runs compare; the binary lives under `.cache/` (never committed, never
built in CI: a build takes minutes and needs Go). v6 configuration is nested JSON; an unknown key
is only logged, so `config` is the one place that names keys and a unit test pins them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt

VERSION = "6.9.1"
MODULE = "github.com/centrifugal/centrifugo/v6"
#: Without it the binary reports version 0.0.0 and logs a "development build" warning.
LDFLAGS = f"-X {MODULE}/internal/build.Version={VERSION}"
DEFAULT_CACHE_DIR = Path(".cache/centrifugo")
NAMESPACE = "bench"
BUILD_TIMEOUT_S = 1800.0
READY_TIMEOUT_S = 30.0

Reporter = Callable[[str], None]


class CentrifugoError(RuntimeError):
    """Centrifugo could not be built, started or published to; the message says why."""


def binary_path(cache_dir: Path) -> Path:
    """Absolute: the server runs in a work directory of its own."""
    return (cache_dir / "centrifugo").resolve()


_VERSION_LINE = re.compile(r"Centrifugo v?(\S+)")


def parse_version(output: str) -> str | None:
    """`centrifugo version` prints `Centrifugo v6.9.1 (Go version: ...)`."""
    found = _VERSION_LINE.search(output)
    return found[1] if found else None


def installed_version(binary: Path) -> str | None:
    if not binary.is_file():
        return None
    try:
        result = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_version(result.stdout)


def build_command(cache_dir: Path) -> tuple[list[str], dict[str, str]]:
    """`go install` of the pinned module into `cache_dir` (GOBIN must be absolute)."""
    env = {**os.environ, "GOBIN": str(cache_dir.resolve()), "GOFLAGS": "-mod=mod"}
    return ["go", "install", "-ldflags", LDFLAGS, f"{MODULE}@v{VERSION}"], env


def ensure_built(cache_dir: Path, report: Reporter) -> Path:
    """The pinned binary, built first when it is missing or another version."""
    binary = binary_path(cache_dir)
    if (found := installed_version(binary)) == VERSION:
        return binary
    if shutil.which("go") is None:
        raise CentrifugoError("Go is needed once to build Centrifugo (https://go.dev/dl/)")
    report(f"building Centrifugo {VERSION} into {cache_dir} (found: {found}; takes minutes) ...")
    cache_dir.mkdir(parents=True, exist_ok=True)
    argv, env = build_command(cache_dir)
    result = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise CentrifugoError(f"go install failed ({result.returncode}): {result.stderr[-2000:]}")
    if (built := installed_version(binary)) != VERSION:
        raise CentrifugoError(f"built Centrifugo reports version {built}, not {VERSION}")
    return binary


@dataclass(frozen=True)
class CentrifugoConfig:
    host: str
    port: int
    hmac_secret: str
    api_key: str
    pid_file: Path
    #: Per-channel history, with recovery and positioning forced: close to RealChat's promise
    #: (a reconnecting client can catch up), which costs Centrifugo some work per publication.
    history_size: int = 1000
    history_ttl: str = "300s"

    def to_json(self) -> dict[str, Any]:
        return {
            "http_server": {"address": self.host, "port": self.port},
            "client": {"token": {"hmac_secret_key": self.hmac_secret}},
            "http_api": {"key": self.api_key},
            "channel": {
                "namespaces": [
                    {
                        "name": NAMESPACE,
                        "allow_subscribe_for_client": True,
                        "history_size": self.history_size,
                        "history_ttl": self.history_ttl,
                        "force_positioning": True,
                        "force_recovery": True,
                    }
                ]
            },
            "admin": {"enabled": False},
            "health": {"enabled": True},
            "usage_stats": {"disabled": True},
            "log": {"level": "warn"},
            "pid_file": str(self.pid_file),
        }

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/connection/websocket"


def channel(run: str) -> str:
    return f"{NAMESPACE}:{run}"


def client_token(secret: str, user: str, ttl_s: int = 3600) -> str:
    """The HS256 connection JWT Centrifugo checks (`sub` = the user)."""
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + ttl_s}, secret, algorithm="HS256")


class CentrifugoServer:
    """One Centrifugo process; `start` writes its config into `workdir` and waits for /health."""

    def __init__(self, binary: Path, config: CentrifugoConfig, workdir: Path) -> None:
        self.binary = binary
        self.config = config
        self.workdir = workdir
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise CentrifugoError("Centrifugo is not running")
        return self._process.pid

    async def start(self) -> None:
        if self._process is not None:
            raise CentrifugoError("Centrifugo is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_file = self.workdir / "config.json"
        config_file.write_text(json.dumps(self.config.to_json(), indent=2))
        log = (self.workdir / "centrifugo.log").open("ab")
        try:
            self._process = await asyncio.create_subprocess_exec(
                str(self.binary),
                "--config",
                str(config_file),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        finally:
            log.close()
        await self._wait_healthy()

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.returncode is not None:
                    raise CentrifugoError(
                        f"Centrifugo exited ({self._process.returncode}); see "
                        f"{self.workdir / 'centrifugo.log'}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.config.base_url}/health") as reply:
                        if reply.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise CentrifugoError(f"Centrifugo not healthy within {READY_TIMEOUT_S:.0f} s")

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def publish(
    http: aiohttp.ClientSession, config: CentrifugoConfig, chan: str, data: str
) -> None:
    """Server-side publish through the HTTP API (into the memory engine)."""
    body = {"channel": chan, "data": data}
    headers = {"X-API-Key": config.api_key}
    async with http.post(f"{config.base_url}/api/publish", json=body, headers=headers) as reply:
        answer = await reply.json(content_type=None)
        if reply.status != 200 or "error" in answer:
            raise CentrifugoError(f"publish failed: {reply.status} {answer}")
