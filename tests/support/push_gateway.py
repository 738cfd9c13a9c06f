"""A recording push gateway for the notifier's tests: it answers the webhook like an operator's
APNs/FCM bridge would, and keeps every request by idempotency key, so a test can tell a retried
notification (same key) from a second one (another key).

It can be taken down (nothing listens), and put in a mode where it records a request and never
answers it (to kill the notifier while a batch waits on the webhook)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.ports import free_port_block


@dataclass(frozen=True)
class Received:
    key: str
    body: dict[str, Any]
    at: float  # time.monotonic()
    answered: int | None  # the status answered, None if held


@dataclass
class RecordingPushGateway:
    port: int = field(default_factory=lambda: free_port_block(offsets=(0,)))
    received: list[Received] = field(default_factory=list)
    #: Record requests, then hold them unanswered (instead of answering 200).
    holding: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None
    _held: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/push"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/push", self._push)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await self.up()

    async def up(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()

    async def down(self) -> None:
        """Stop listening (connections are refused) and drop the requests held."""
        for held in self._held:
            held.cancel()
        self._held.clear()
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def close(self) -> None:
        await self.down()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _push(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        body = await request.json()
        if self.holding:
            self.received.append(Received(key, body, time.monotonic(), None))
            self.arrived.set()
            held: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._held.append(held)
            await held  # cancelled by down(); the notifier is meant to die meanwhile
        self.received.append(Received(key, body, time.monotonic(), 200))
        self.arrived.set()
        return web.json_response({"accepted": True})

    def for_user(self, user_id: str) -> list[Received]:
        return [r for r in self.received if r.body["user_id"] == user_id]

    def accepted_keys(self, user_id: str) -> dict[str, int]:
        """Per idempotency key, how many times it was answered 200 (a real gateway delivers a
        key once, however often it comes)."""
        counts: dict[str, int] = defaultdict(int)
        for r in self.for_user(user_id):
            if r.answered == 200:
                counts[r.key] += 1
        return dict(counts)

    def notifications(self, user_id: str) -> int:
        """Notifications the user got: distinct keys accepted."""
        return len(self.accepted_keys(user_id))
