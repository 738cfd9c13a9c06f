"""A scripted RealChat server for the SDK's tests: an in-process aiohttp app on a free port.

Each WebSocket connection the client opens is handed to the next script in line (the first
connection to `scripts[0]`, ...). A script plays the server's side by hand: say hello, expect
the client's frames (`expect` waits for the next frame of a type, with a generous deadline),
send frames in any order, duplicates included, close with a code or drop the TCP stream.
A connection beyond the scripts, or a failed script, is recorded in `errors`.

`GET /v1/conversations` lists `conversation_ids` (the SDK's discovery on reconnect) and notes
the bearer token of each listing in `listing_tokens`; `FakeConnection.token` is the token a
WebSocket was opened with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

Script = Callable[["FakeConnection"], Awaitable[None]]

DEADLINE_S = 10.0


def message(conversation_id: str, seq: int, content: str | None = None) -> dict[str, Any]:
    return {
        "message_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{conversation_id}/{seq}")),
        "conversation_id": conversation_id,
        "seq": seq,
        "sender_id": "someone",
        "content": content or f"m{seq}",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
    }


class FakeConnection:
    def __init__(self, number: int, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.number = number
        self.ws = ws
        self.request = request
        #: Every frame the client sent on this connection, in order.
        self.frames: list[dict[str, Any]] = []
        self._unread: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    @property
    def token(self) -> str:
        return self.request.query.get("token", "")

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def hello(self, user_id: str = "user-1") -> None:
        await self.send(
            {"type": "hello", "user_id": user_id, "session_id": f"s{self.number}",
             "heartbeat_s": 20.0}
        )  # fmt: skip

    async def messages(self, conversation_id: str, *seqs: int) -> None:
        for seq in seqs:
            await self.send({"type": "message", "message": message(conversation_id, seq)})

    async def live_until(
        self, stop: asyncio.Event, conversation_id: str, interval_s: float = 0.05
    ) -> None:
        """Live `message` frames, seq 1, 2, ..., every `interval_s` until `stop` is set or the
        connection is closed (a server whose live delivery goes on whatever the handshake)."""
        seq = 0
        while not stop.is_set() and not self.ws.closed:
            seq += 1
            await self.messages(conversation_id, seq)
            await asyncio.sleep(interval_s)

    async def sync_done(
        self, positions: dict[str, int], changes: dict[str, int] | None = None
    ) -> None:
        frame: dict[str, Any] = {"type": "sync_done", "positions": positions}
        if changes is not None:
            frame["changes"] = changes
        await self.send(frame)

    async def expect(self, kind: str) -> dict[str, Any]:
        """The next frame of type `kind` the client sends (frames of other types are skipped,
        but kept in `frames`)."""
        async with asyncio.timeout(DEADLINE_S):
            while True:
                frame = await self._unread.get()
                if frame is None:
                    raise AssertionError(f"connection {self.number} closed; expected {kind}")
                if frame["type"] == kind:
                    return frame

    async def expect_unless(self, kind: str, stop: asyncio.Event) -> dict[str, Any] | None:
        """`expect(kind)`, or None as soon as `stop` is set."""
        waiting = asyncio.ensure_future(self.expect(kind))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiting, stopped):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return None if stop.is_set() or waiting.cancelled() else waiting.result()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    async def close(self, code: int, reason: str = "") -> None:
        await self.ws.close(code=code, message=reason.encode())

    def drop(self) -> None:
        """Drop the TCP connection without a close frame."""
        if self.request.transport is not None:
            self.request.transport.abort()

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type is WSMsgType.TEXT:
                    frame = json.loads(msg.data)
                    self.frames.append(frame)
                    self._unread.put_nowait(frame)
        finally:
            self._unread.put_nowait(None)


class FakeServer:
    def __init__(
        self, scripts: Sequence[Script], conversation_ids: list[str] | None = None
    ) -> None:
        self.scripts = scripts
        self.conversation_ids = conversation_ids or []
        self.connections: list[FakeConnection] = []
        self.errors: list[str] = []
        self.listings = 0
        self.listing_tokens: list[str] = []
        #: Listings answered 503 (`chat_unavailable`) before the next one succeeds.
        self.listings_refused = 0
        self.base_url = ""
        self._connected = asyncio.Event()
        self._scripts_done: list[asyncio.Future[None]] = [
            asyncio.get_running_loop().create_future() for _ in scripts
        ]
        app = web.Application()
        app.router.add_get("/v1/ws", self._ws)
        app.router.add_get("/v1/conversations", self._conversations)
        self._runner = web.AppRunner(app)

    async def __aenter__(self) -> FakeServer:
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))  # a free port, held from here on
        await web.SockSite(self._runner, sock).start()
        port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
        for done in self._scripts_done:
            if not done.done():
                done.cancel()

    async def connection(self, number: int) -> FakeConnection:
        """Connection `number` (0-based), once the client opened it."""
        async with asyncio.timeout(DEADLINE_S):
            while len(self.connections) <= number:
                self._connected.clear()
                await self._connected.wait()
        return self.connections[number]

    async def script_done(self, number: int) -> None:
        """Until script `number` has run to its end (re-raises its failure)."""
        async with asyncio.timeout(DEADLINE_S):
            await asyncio.shield(self._scripts_done[number])

    async def _conversations(self, request: web.Request) -> web.Response:
        self.listings += 1
        self.listing_tokens.append(request.headers.get("Authorization", "").removeprefix("Bearer "))
        if self.listings_refused > 0:
            self.listings_refused -= 1
            error = {"code": "chat_unavailable", "message": "the chat service is unavailable"}
            return web.json_response({"error": error}, status=503)
        conversations: list[dict[str, Any]] = [
            {"conversation_id": cid, "title": None, "member_ids": [], "last_seq": 0}
            for cid in self.conversation_ids
        ]
        return web.json_response({"conversations": conversations})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        number = len(self.connections)
        connection = FakeConnection(number, ws, request)
        self.connections.append(connection)
        self._connected.set()
        reader = asyncio.create_task(connection._read())
        if number >= len(self.scripts):
            self.errors.append(f"unexpected connection {number}")
            await ws.close(code=1011, message=b"no script")
        else:
            done = self._scripts_done[number]
            try:
                await self.scripts[number](connection)
            except BaseException as exc:
                self.errors.append(f"script {number} failed: {exc!r}")
                done.set_exception(exc)
                done.exception()  # retrieved: the test may not wait for it
                if not isinstance(exc, Exception):
                    raise
            else:
                done.set_result(None)
        with contextlib.suppress(asyncio.CancelledError):
            await reader  # until the client (or a close/drop above) ends the connection
        return ws
