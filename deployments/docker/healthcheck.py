#!/usr/bin/env python3
"""HEALTHCHECK of the realchat image: GET /healthz on the ops port of the RealChat service this
container runs (liveness: the process answers). Readiness is /readyz on the same port.

    realchat-healthcheck [SERVICE]

Without SERVICE, the service is the subcommand of the container's main process (PID 1, started
by the entrypoint as `realchat <service>`). The port comes from the same settings the service
reads (`REALCHAT_<SECTION>__OPS_PORT`). Exit status 0: healthy; 1: not.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

from realchat.config import Settings

#: `realchat <subcommand>` -> the settings section that holds its ops port.
OPS_SECTIONS = {
    "auth-service": "auth",
    "chat-service": "chat",
    "outbox-publisher": "outbox",
    "presence": "presence",
    "gateway": "gateway",
}
#: Addresses that mean "every interface": probe through loopback instead.
_ANY = {"", "0.0.0.0", "::"}


def service_of(argv: list[str]) -> str | None:
    """The RealChat service a command line runs, if any."""
    return next((arg for arg in argv if arg in OPS_SECTIONS), None)


def healthz_url(settings: Settings, service: str) -> str:
    port: int = getattr(settings, OPS_SECTIONS[service]).ops_port
    host = "127.0.0.1" if settings.ops_host in _ANY else settings.ops_host
    return f"http://{host}:{port}/healthz"


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        service: str | None = argv[1]
    else:
        service = service_of(Path("/proc/1/cmdline").read_bytes().decode().split("\0"))
    if service not in OPS_SECTIONS:
        print(f"unhealthy: {service!r} is not a RealChat service with an ops port")
        return 1
    url = healthz_url(Settings(), service)
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            status = reply.status
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}")
        return 1
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
