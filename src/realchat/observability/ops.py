"""The ops HTTP endpoint of a process: /metrics (Prometheus), /healthz (alive), /readyz (ready
to serve, per the process's own readiness check)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

ReadinessCheck = Callable[[], Awaitable[bool]]

ASYNCIO_TASKS = Gauge(
    "realchat_asyncio_tasks",
    "Tasks alive on the process's event loop: a count that only grows is a leak",
)


async def start_ops_server(host: str, port: int, ready: ReadinessCheck) -> web.AppRunner:
    loop = asyncio.get_running_loop()
    ASYNCIO_TASKS.set_function(lambda: len(asyncio.all_tasks(loop)))

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok = await ready()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
