"""A plain test client of the public API (REST + WebSocket), speaking the contract by hand so
tests see exactly what outside clients see."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

PASSWORD = "correct horse battery"


@dataclass
class User:
    user_id: str
    username: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def register(http: aiohttp.ClientSession, base: str, name: str = "user") -> User:
    username = f"{name}_{uuid.uuid4().hex[:10]}"
    credentials = {"username": username, "password": PASSWORD}
    async with http.post(f"{base}/v1/users", json=credentials) as created:
        assert created.status == 201, await created.text()
        user_id = (await created.json())["user_id"]
    async with http.post(f"{base}/v1/tokens", json=credentials) as token:
        assert token.status == 200, await token.text()
        access = (await token.json())["access_token"]
    return User(user_id, username, access)


async def create_conversation(
    http: aiohttp.ClientSession, base: str, owner: User, *members: User
) -> str:
    body = {"member_ids": [m.user_id for m in members], "title": "test"}
    async with http.post(f"{base}/v1/conversations", json=body, headers=owner.auth) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["conversation_id"])


async def send_rest(
    http: aiohttp.ClientSession, base: str, user: User, conversation_id: str, content: str
) -> dict[str, Any]:
    body = {"client_msg_id": uuid.uuid4().hex, "content": content}
    url = f"{base}/v1/conversations/{conversation_id}/messages"
    async with http.post(url, json=body, headers=user.auth) as r:
        assert r.status == 201, await r.text()
        return dict(await r.json())


@dataclass
class Device:
    """One WebSocket connection that records every frame it receives."""

    ws: aiohttp.ClientWebSocketResponse
    frames: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(msg.json())
                self.arrived.set()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json(frame)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    def seqs(self, conversation_id: str) -> list[int]:
        """Seqs of the `message` frames of a conversation, in arrival order."""
        return [
            f["message"]["seq"]
            for f in self.of_type("message")
            if f["message"]["conversation_id"] == conversation_id
        ]

    def seen(self, conversation_id: str) -> list[int]:
        """Seqs the application has (message frames and its own send_ok replies), deduplicated,
        in arrival order."""
        frames = [f for f in self.frames if f["type"] in ("message", "send_ok")]
        seqs = [
            f["message"]["seq"]
            for f in frames
            if f["message"]["conversation_id"] == conversation_id
        ]
        return list(dict.fromkeys(seqs))

    async def wait(self, predicate: Any, timeout_s: float = 30) -> None:
        """Until `predicate(self)` holds (each received frame re-checks it)."""

        async def loop() -> None:
            while not predicate(self):
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(loop(), timeout_s)

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            await self.reader


async def barrier(device: Device) -> None:
    """Ping and wait for the pong: what the gateway queued to this device earlier has arrived."""
    pongs = len(device.of_type("pong"))
    await device.send({"type": "ping"})
    await device.wait(lambda d: len(d.of_type("pong")) > pongs)


async def connect(
    http: aiohttp.ClientSession,
    base: str,
    user: User,
    hello: bool = True,
    device: str | None = None,
) -> Device:
    query = f"token={user.token}" + (f"&device={device}" if device is not None else "")
    ws = await http.ws_connect(f"{base}/v1/ws?{query}", heartbeat=None)
    device = Device(ws)
    device.reader = asyncio.create_task(device._read())
    if hello:
        await device.wait(lambda d: d.of_type("hello"), timeout_s=10)
    return device
