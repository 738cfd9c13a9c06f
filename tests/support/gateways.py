"""An extra gateway process with settings of its own (a small send queue, a low send limit, ...)
beside the e2e fixture's, serving the same users through the same chat and auth services.

It runs as `python -m realchat gateway` under `running_realchat` (ready through its /readyz,
always stopped and reaped, log tail printed on failure) with the environment of the services'
stack, so it reaches the same PostgreSQL, Redis, Kafka, chat service, internal token and token
public key; only its public and ops ports, its instance id and the given options differ.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from realchat.config import GatewaySettings, HttpSettings, to_environment
from realchat.stack.supervisor import Stack
from tests.support.ports import free_port_block
from tests.support.processes import RealchatProcess, running_realchat


@dataclass
class ExtraGateway:
    base_url: str
    ops_url: str
    settings: GatewaySettings
    process: RealchatProcess

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        """Resident memory of the process now (VmRSS)."""
        return rss_bytes(self.pid)

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        return await scrape(http, self.ops_url)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def scrape(http: aiohttp.ClientSession, ops_url: str) -> dict[str, float]:
    """A process's /metrics as `{"name{labels}": value}` (samples only, no comments)."""
    async with http.get(f"{ops_url}/metrics") as response:
        assert response.status == 200, await response.text()
        text = await response.text()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def gateway_environment(
    services: Stack, gateway: GatewaySettings, http: HttpSettings
) -> dict[str, str]:
    """The services' environment with this gateway's own `gateway` and `http` sections."""
    env = {
        name: value
        for name, value in services.environment().items()
        if not name.startswith(("REALCHAT_GATEWAY__", "REALCHAT_HTTP__"))
    }
    settings = services.app_settings.model_copy(update={"gateway": gateway, "http": http})
    env.update(to_environment(settings, ("gateway", "http")))
    return env


@contextlib.asynccontextmanager
async def extra_gateway(
    services: Stack, log_dir: Path, env_overrides: dict[str, str] | None = None, **options: Any
) -> AsyncIterator[ExtraGateway]:
    """A ready gateway for the block, with `options` (GatewaySettings fields) over the services'
    gateway settings, on free ports and with a fresh instance id (its own consumer group);
    `env_overrides` (REALCHAT_* variables) change other sections for this gateway only."""
    base = free_port_block(offsets=(0, 1))
    gateway = GatewaySettings.model_validate(
        {
            **services.app_settings.gateway.model_dump(),
            # Unique, so its consumer group is new and starts at the end of the topics (a
            # reused one would first replay everything since its last run's commits).
            "instance_id": f"extra-{base}-{uuid.uuid4().hex[:8]}",
            "ops_port": base + 1,
            **options,
        }
    )
    http = services.app_settings.http.model_copy(update={"port": base})
    env = {**gateway_environment(services, gateway, http), **(env_overrides or {})}
    async with running_realchat("gateway", env, log_dir, gateway.ops_port) as child:
        yield ExtraGateway(
            base_url=f"http://{http.host}:{base}",
            ops_url=f"http://{services.app_settings.ops_host}:{gateway.ops_port}",
            settings=gateway,
            process=child,
        )
