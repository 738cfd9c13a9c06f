"""The project's own Redis: own port and dir, password from the state dir, no persistence.

Presence is rebuilt from heartbeats after a restart, so nothing here needs to survive one.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from realchat.stack.component import ComponentNotReadyError, ListensLocally
from realchat.stack.process import ProcessSpec, installed
from realchat.stack.secrets import local_secret


@dataclass
class Redis(ListensLocally):
    state_dir: Path
    host: str
    port: int

    name: str = "redis"
    #: SIGTERM: Redis exits at once (no persistence to flush).
    stop_signal: signal.Signals = signal.SIGTERM
    stop_grace_s: float = 10.0

    @property
    def url(self) -> str:
        password = local_secret(self.state_dir, "redis-password")
        return f"redis://:{password}@{self.host}:{self.port}/0"

    def prepare(self) -> None:
        (self.state_dir / "redis").mkdir(parents=True, exist_ok=True)

    def process_spec(self) -> ProcessSpec:
        server = installed("redis-server")
        return ProcessSpec(
            argv=[
                server,
                "--bind",
                self.host,
                "--port",
                str(self.port),
                "--dir",
                str((self.state_dir / "redis").resolve()),
                "--requirepass",
                local_secret(self.state_dir, "redis-password"),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--notify-keyspace-events",
                "Eg$x",
            ],
            log_path=self.log_path,
        )

    async def probe(self) -> None:
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=2)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            raise ComponentNotReadyError(f"no PONG: {exc}") from exc
        finally:
            await client.aclose()
