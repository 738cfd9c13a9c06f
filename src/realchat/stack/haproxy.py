"""The balancer in front of several gateways: HAProxy, round robin, no stickiness.

Any gateway can serve any client (they are stateless), so a reconnecting client simply lands on
whichever is next. Health checks hit each gateway's /readyz, which turns 503 as soon as it
starts draining, so new connections stop going to it within a check interval.
"""

from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from realchat.stack.component import expect_http_ok
from realchat.stack.process import ProcessSpec


@dataclass(frozen=True)
class Backend:
    name: str
    host: str
    port: int
    ops_port: int


@dataclass
class Balancer:
    state_dir: Path
    host: str
    port: int
    backends: list[Backend]

    name: str = "balancer"
    #: SIGUSR1 is HAProxy's soft stop: it stops listening and lets open connections finish.
    stop_signal: signal.Signals = signal.SIGUSR1
    stop_grace_s: float = 10.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / "balancer.log"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "haproxy" / "haproxy.cfg"

    def config(self) -> str:
        servers = "\n".join(
            f"    server {b.name} {b.host}:{b.port} check port {b.ops_port}" for b in self.backends
        )
        return f"""\
global
    log stdout format raw local0 notice

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    # Longer than the gateway's 60 s idle timeout: the gateway decides when a client is idle.
    timeout client 90s
    timeout server 90s
    # An upgraded WebSocket lives as long as the gateway keeps it.
    timeout tunnel 1h
    timeout client-fin 5s
    # A gateway that just died refuses connections: try another one instead of failing.
    retries 2
    option redispatch 1

frontend public
    bind {self.host}:{self.port}
    default_backend gateways

backend gateways
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz
    default-server inter 1s fall 2 rise 1
{servers}
"""

    def prepare(self) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())

    def process_spec(self) -> ProcessSpec:
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(haproxy).exists():
            raise RuntimeError("haproxy not installed (run `make deps`)")
        return ProcessSpec(
            argv=[haproxy, "-db", "-f", str(self.config_path)], log_path=self.log_path
        )

    async def probe(self) -> None:
        await expect_http_ok(f"http://{self.address}/v1/openapi.json")
