"""Centrifugo, the peer: built once from the Go module proxy (`stack.gotool`), configured, run,
published to.

Never built in CI (a build takes minutes and needs Go). v6 configuration is nested JSON; an
unknown key is only logged, so `config` is the one place that names keys and a unit test pins them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from realchat.stack.gotool import CENTRIFUGO, GoToolError

VERSION = CENTRIFUGO.version
DEFAULT_CACHE_DIR = Path(".cache/centrifugo")
NAMESPACE = "bench"
READY_TIMEOUT_S = 30.0

Reporter = Callable[[str], None]


class CentrifugoError(RuntimeError):
    """Centrifugo could not be started or published to; the message says why."""


def ensure_built(cache_dir: Path, report: Reporter) -> Path:
    """The pinned binary (built once from the Go module proxy)."""
    try:
        return CENTRIFUGO.ensure_built(cache_dir, report)
    except GoToolError as error:
        raise CentrifugoError(str(error)) from error


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
