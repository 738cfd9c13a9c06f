"""Network faults between components: Toxiproxy (a TCP proxy with an HTTP API) on the links the
failure tests cut or slow down.

A link is one proxy: the downstream side connects to `listen`, the proxy connects `upstream`.
Only the failure-test stack routes links through it (`StackSettings.fault_links`); the kernel
here has no `netem`, so faults are made in user space:

- latency: every chunk delayed by a fixed time, in order (both directions);
- lossy: every chunk delayed by 0 to 2x the given time at random, in order. TCP hides loss from
  applications as retransmission stalls; Toxiproxy cannot drop segments, so the stalls are made
  directly;
- partition: nothing gets through in either direction (data is held back and dropped, new
  connections hang); when it heals, the connections it crossed are cut, as peers' timeouts
  would have cut them, and new ones work.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from realchat.stack.component import ComponentNotReadyError, ListensLocally, expect_http_ok
from realchat.stack.gotool import TOXIPROXY
from realchat.stack.process import ProcessSpec

#: Where `make deps-test` / `make chaos` build the pinned Toxiproxy.
DEFAULT_CACHE_DIR = Path(".cache/toxiproxy")

_STREAMS = ("upstream", "downstream")


class FaultProxyError(RuntimeError):
    """The fault proxy refused a request; the message says what it answered."""


@dataclass(frozen=True)
class Link:
    """One proxied connection path, e.g. `gateways-kafka-1` (the gateways to Kafka node 1)."""

    name: str
    listen_port: int
    upstream_port: int
    host: str = "127.0.0.1"

    def as_proxy(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": f"{self.host}:{self.listen_port}",
            "upstream": f"{self.host}:{self.upstream_port}",
            "enabled": True,
        }


def latency_toxics(delay_ms: int, jitter_ms: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "name": f"latency-{stream}",
            "type": "latency",
            "stream": stream,
            "toxicity": 1.0,
            "attributes": {"latency": delay_ms, "jitter": jitter_ms},
        }
        for stream in _STREAMS
    ]


def partition_toxics() -> list[dict[str, Any]]:
    """`timeout` 0: data is dropped and the connection kept until the toxic is removed."""
    return [
        {
            "name": f"partition-{stream}",
            "type": "timeout",
            "stream": stream,
            "toxicity": 1.0,
            "attributes": {"timeout": 0},
        }
        for stream in _STREAMS
    ]


@dataclass
class FaultProxy(ListensLocally):
    """The Toxiproxy server of a stack, with its links created at start from a config file."""

    state_dir: Path
    host: str
    #: Its API's (the links listen on their own ports).
    port: int
    links: Sequence[Link]
    cache_dir: Path = DEFAULT_CACHE_DIR

    name: str = "fault-proxy"
    stop_signal: signal.Signals = signal.SIGTERM
    stop_grace_s: float = 5.0

    @property
    def api_url(self) -> str:
        return f"http://{self.address}"

    @property
    def _config_path(self) -> Path:
        return self.state_dir / "fault-proxy" / "links.json"

    def prepare(self) -> None:
        TOXIPROXY.ensure_built(self.cache_dir, report=lambda line: None)
        self._config_path.parent.mkdir(parents=True, exist_ok=True)
        self._config_path.write_text(json.dumps([link.as_proxy() for link in self.links]))

    def process_spec(self) -> ProcessSpec:
        return ProcessSpec(
            argv=[
                str(TOXIPROXY.binary(self.cache_dir)),
                "-host",
                self.host,
                "-port",
                str(self.port),
                "-config",
                str(self._config_path.resolve()),
            ],
            log_path=self.log_path,
        )

    async def probe(self) -> None:
        await expect_http_ok(f"{self.api_url}/version")
        names = set(await self._get("/proxies"))
        missing = {link.name for link in self.links} - names
        if missing:
            raise ComponentNotReadyError(f"links not created yet: {sorted(missing)}")

    # -- faults ------------------------------------------------------------------------------

    def link_names(self, prefix: str) -> list[str]:
        """Every link whose name starts with `prefix` (a link per Kafka node, for example)."""
        found = [link.name for link in self.links if link.name.startswith(prefix)]
        if not found:
            raise KeyError(f"no link {prefix!r} (known: {[link.name for link in self.links]})")
        return found

    async def add_toxics(self, link: str, toxics: list[dict[str, Any]]) -> None:
        for toxic in toxics:
            await self._send("POST", f"/proxies/{link}/toxics", toxic)

    async def heal(self, link: str, cut_connections: bool) -> None:
        """Remove every toxic; with `cut_connections`, close the link's open connections first
        (the proxy refuses new ones for that instant, then accepts again)."""
        if cut_connections:
            await self._send("POST", f"/proxies/{link}", {"enabled": False})
        state = await self._get(f"/proxies/{link}")
        for toxic in state.get("toxics") or []:
            await self._send("DELETE", f"/proxies/{link}/toxics/{toxic['name']}", None)
        if cut_connections:
            await self._send("POST", f"/proxies/{link}", {"enabled": True})

    async def _get(self, path: str) -> Any:
        return await self._send("GET", path, None)

    async def _send(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        timeout = aiohttp.ClientTimeout(total=5)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.request(method, f"{self.api_url}{path}", json=body) as reply,
            ):
                text = await reply.text()
                if reply.status >= 300:
                    raise FaultProxyError(f"{method} {path}: {reply.status} {text.strip()}")
                return json.loads(text) if text.strip() else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FaultProxyError(f"{method} {path}: {exc}") from exc


async def hold(
    proxy: FaultProxy,
    links: Sequence[str],
    toxics: list[dict[str, Any]],
    seconds: float,
    cut_connections: bool,
) -> None:
    """Apply `toxics` to `links` for `seconds`, then heal them (even if cancelled)."""
    try:
        for link in links:
            await proxy.add_toxics(link, toxics)
        await asyncio.sleep(seconds)
    finally:
        for link in links:
            await proxy.heal(link, cut_connections)
