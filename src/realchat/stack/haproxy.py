"""The balancer in front of several gateways: HAProxy, round robin, no stickiness.

Any gateway can serve any client (they are stateless), so a reconnecting client simply lands on
whichever is next. Health checks hit each gateway's /readyz, which turns 503 as soon as it
starts draining, so new connections stop going to it within a check interval.
"""

from __future__ import annotations

import resource
import signal
from dataclasses import dataclass
from pathlib import Path

from realchat.stack.component import ListensLocally, expect_http_ok
from realchat.stack.process import ProcessSpec, installed

#: Connections the balancer holds at most, where the machine's file limit allows it.
MAX_CONNECTIONS = 50_000
#: Kernel pipes for splicing, at most (two descriptors each). Only transfers large enough to
#: gain from splicing use one, for as long as they last; HAProxy's default, a quarter of
#: `maxconn`, would reserve 25,000 descriptors for them.
MAX_PIPES = 1024


def connection_limit() -> int:
    """HAProxy's `maxconn`: each connection takes two descriptors (client and gateway side),
    each splicing pipe two more, and HAProxy refuses to start when it cannot raise its limit
    that far, so stay within the hard limit this process (and so HAProxy, its child) has."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(256, min(MAX_CONNECTIONS, (hard - 256 - 2 * MAX_PIPES) // 2))


@dataclass(frozen=True)
class Backend:
    name: str
    host: str
    port: int
    ops_port: int


@dataclass
class Balancer(ListensLocally):
    state_dir: Path
    host: str
    port: int
    backends: list[Backend]

    name: str = "balancer"
    #: SIGUSR1 is HAProxy's soft stop: it stops listening and lets open connections finish.
    stop_signal: signal.Signals = signal.SIGUSR1
    stop_grace_s: float = 10.0

    @property
    def config_path(self) -> Path:
        return self.state_dir / "haproxy" / "haproxy.cfg"

    def config(self) -> str:
        servers = "\n".join(
            f"    server {b.name} {b.host}:{b.port} check port {b.ops_port}" for b in self.backends
        )
        maxconn = connection_limit()
        return f"""\
global
    log stdout format raw local0 notice
    # Connections held at once (each takes two file descriptors: client and gateway side).
    maxconn {maxconn}
    maxpipes {MAX_PIPES}
    # One thread: relaying a small frame is a few syscalls, and threads on the cores the
    # gateways use cost more in wake-ups and locking than they add.
    nbthread 1

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    # A request's headers must be complete within this: slow headers cannot hold a socket.
    timeout http-request 10s
    timeout http-keep-alive 10s
    # Longer than the gateway's 60 s idle timeout: the gateway decides when a client is idle.
    timeout client 90s
    timeout server 90s
    # An upgraded WebSocket lives as long as the gateway keeps it.
    timeout tunnel 1h
    timeout client-fin 5s
    # A gateway that just died refuses connections: try another one instead of failing.
    retries 2
    option redispatch 1
    # Kernel splicing (no copy through HAProxy's buffers) where a transfer is large enough to
    # gain from it, such as a backfill; small frames are relayed as before.
    option splice-auto

frontend public
    bind {self.host}:{self.port}
    maxconn {maxconn}
    # The balancer is the edge: the client's address replaces whatever X-Forwarded-For the
    # client sent, so rate limits behind it count real addresses (auth trusts only its proxies).
    http-request set-header X-Forwarded-For %[src]
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
        haproxy = installed("haproxy", Path("/usr/sbin/haproxy"))
        return ProcessSpec(
            argv=[haproxy, "-db", "-f", str(self.config_path)], log_path=self.log_path
        )

    async def probe(self) -> None:
        await expect_http_ok(f"http://{self.address}/v1/openapi.json")
