"""A throw-away stack with two gateways behind HAProxy, driven through the `realchat` CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from realchat.config import Settings
from realchat.stack.process import is_alive
from tests.support.gateways import scrape
from tests.support.stacks import settings_env, throwaway_settings


def realchat(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "realchat", *args],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


class TwoGateways:
    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = {**os.environ, **settings_env(settings), **(env or {})}
        self.base_url = f"http://127.0.0.1:{settings.http.port}"

    def status(self) -> dict[str, dict[str, object]]:
        result = realchat(self.env, "stack", "status", "--json")
        return {c["name"]: c for c in json.loads(result.stdout)}

    def ops_port(self, instance: int) -> int:
        return self.settings.gateway.ops_port + instance - 1

    def gateway_url(self, instance: int) -> str:
        """Gateway `instance`'s own public port (REST + WebSocket), past the balancer."""
        return f"http://{self.settings.http.host}:{self.settings.stack.gateway_port + instance}"

    async def balanced_request(self) -> None:
        """One request through the balancer (moves its round robin on by one)."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.base_url + "/v1/openapi.json") as r,
        ):
            assert r.status == 200, await r.text()

    async def active_connections(self, instance: int) -> float:
        """The WebSockets gateway `instance` has open now (its ops metrics)."""
        ops_url = f"http://{self.settings.ops_host}:{self.ops_port(instance)}"
        async with aiohttp.ClientSession() as http:
            samples = await scrape(http, ops_url)
        return samples.get("realchat_gateway_active_connections", 0.0)

    async def run(self, *args: str) -> None:
        """A `realchat` command in a thread, so the clients keep running meanwhile."""
        result = await asyncio.to_thread(realchat, self.env, *args)
        assert result.returncode == 0, result.stdout + result.stderr

    async def healthy(self, name: str) -> bool:
        return bool((await asyncio.to_thread(self.status))[name]["healthy"])


@contextmanager
def two_gateways_stack(state_dir: Path, env: dict[str, str] | None = None) -> Iterator[TwoGateways]:
    """`realchat stack up --detach` with two gateways; reset at the end: nothing left running,
    no data left (PostgreSQL's fallback dir included). `env` (REALCHAT_* variables) reaches
    every process of the stack, e.g. gateway settings."""
    stack = TwoGateways(throwaway_settings(state_dir, gateways=2), env)
    up = realchat(stack.env, "stack", "up", "--detach")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield stack
    finally:
        pids = [int(str(c["pid"])) for c in stack.status().values() if c["pid"]]
        reset = realchat(stack.env, "stack", "reset")
        assert reset.returncode == 0, reset.stdout + reset.stderr
        assert [p for p in pids if is_alive(p)] == []
