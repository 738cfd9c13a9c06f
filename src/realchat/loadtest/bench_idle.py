"""Memory per idle WebSocket connection at a gateway: `realchat bench idle`.

A gateway process serving only the real `/v1/ws` session handler (aiohttp, uvloop, the real
`Session`, `Hub` and `Connection`), with the services behind it stubbed (any token is its own
user id; presence and chat are never called by an idle session), and this process as the
client: it opens connections in steps from 127.0.0.1-8 (many source addresses: the ephemeral
ports of one run out near 28k), waits for each hello, lets the server settle and reads the
server's RSS from /proc. What a connection costs the gateway process, nothing else: no
balancer, no Kafka consumer, no Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from realchat.filelimit import raise_file_limit

#: Source addresses the client spreads its connections over.
SOURCES = 8


@dataclass(frozen=True)
class IdleStep:
    connections: int
    rss_kib: int
    kib_per_connection: float
    marginal_kib: float


async def _serve(port: int) -> None:
    from aiohttp import web

    from realchat.auth.tokens import TokenClaims
    from realchat.config import GatewaySettings
    from realchat.gateway.hub import Hub
    from realchat.gateway.sessions import SessionGuard
    from realchat.gateway.sync import Backfiller
    from realchat.gateway.websocket import Session

    class AnyToken:
        """A token is the user id; it never expires and its version is always current (the
        guard's own per-session bookkeeping is still measured)."""

        def claims(self, token: str) -> TokenClaims:
            return TokenClaims(uuid.UUID(token), 0, float("inf"))

        async def current(self, user_ids: list[uuid.UUID]) -> list[int]:
            return [0] * len(user_ids)

    class NoPresence:
        def connected(self, *_: object) -> None: ...

        def disconnected(self, *_: object) -> None: ...

    stub: Any = None
    session = Session(
        hub=Hub(64),
        chat=stub,
        guard=SessionGuard(cast(Any, AnyToken()), cast(Any, AnyToken())),
        backfiller=Backfiller(stub, 500),
        send_limiter=stub,
        presence=cast(Any, NoPresence()),
        settings=GatewaySettings(),
        delivering=lambda: True,
    )
    app = web.Application()
    app.router.add_get("/v1/ws", session.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


async def _open(port: int, n: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=(f"127.0.0.{1 + n % SOURCES}", 0)
    )
    writer.write(
        f"GET /v1/ws?token={uuid.uuid4()} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    await reader.readuntil(b'"hello"')
    return reader, writer


async def bench_idle(connections: int, step: int, settle_s: float, port: int) -> list[IdleStep]:
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "realchat.loadtest.bench_idle",
        str(port),
        stdout=asyncio.subprocess.PIPE,
    )
    assert server.stdout is not None
    try:
        await asyncio.wait_for(server.stdout.readline(), 30)
        await asyncio.sleep(settle_s)
        base = previous = _rss_kib(server.pid)
        held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        steps = []
        gate = asyncio.Semaphore(200)

        async def one(n: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            async with gate:
                return await _open(port, n)

        while len(held) < connections:
            count = min(step, connections - len(held))
            held += await asyncio.gather(*(one(len(held) + i) for i in range(count)))
            await asyncio.sleep(settle_s)
            rss = _rss_kib(server.pid)
            steps.append(
                IdleStep(
                    connections=len(held),
                    rss_kib=rss,
                    kib_per_connection=round((rss - base) / len(held), 1),
                    marginal_kib=round((rss - previous) / count, 1),
                )
            )
            previous = rss
            last = steps[-1]
            print(
                f"{last.connections:>7} connections: {last.kib_per_connection} KiB each, "
                f"marginal {last.marginal_kib} KiB (RSS {rss} KiB, base {base} KiB)"
            )
        for _, writer in held:
            writer.close()
        return steps
    finally:
        server.terminate()
        await server.wait()


def bench_idle_command(
    connections: int, step: int, settle_s: float, port: int, output: Path
) -> int:
    raise_file_limit()
    started = time.monotonic()
    steps = asyncio.run(bench_idle(connections, step, settle_s, port))
    report = {
        "benchmark": "gateway-idle-memory",
        "at": datetime.now(UTC).isoformat(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "seconds": round(time.monotonic() - started, 1),
        "steps": [asdict(s) for s in steps],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {output}")
    return 0


if __name__ == "__main__":  # the server side, started by bench_idle
    import uvloop

    raise_file_limit()
    uvloop.run(_serve(int(sys.argv[1])))
