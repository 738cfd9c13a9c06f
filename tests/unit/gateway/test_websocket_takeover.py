"""A session's socket taken over from aiohttp after the upgrade: the gateway reads and writes it
itself, aiohttp forgets it, and the session ends cleanly however the client goes."""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from realchat.auth.tokens import InvalidToken, TokenClaims
from realchat.config import GatewaySettings
from realchat.gateway.hub import Hub
from realchat.gateway.sync import Backfiller
from realchat.gateway.websocket import Session
from realchat.gateway.wsreader import Opcode
from tests.unit.gateway.test_wsreader import client_frame

pytestmark = pytest.mark.asyncio(loop_scope="session")

Client = TestClient[web.Request, web.Application]


class TokenIsUserId:
    """A session guard whose tokens are user ids (no signature, never revoked)."""

    async def admit(self, token: str) -> TokenClaims:
        try:
            return TokenClaims(uuid.UUID(token), 0, time.time() + 3600)
        except ValueError:
            raise InvalidToken("malformed", "not a user id") from None

    def track(self, connection: object, claims: TokenClaims) -> None:
        pass

    def untrack(self, connection: object) -> None:
        pass


class Devices:
    def __init__(self) -> None:
        self.online: set[uuid.UUID] = set()

    def connected(self, session_id: uuid.UUID, *_: object) -> None:
        self.online.add(session_id)

    def disconnected(self, session_id: uuid.UUID) -> None:
        self.online.discard(session_id)


class Gateway:
    def __init__(self, client: Client, session: Session, devices: Devices) -> None:
        self.client = client
        self.session = session
        self.devices = devices

    @property
    def connections(self) -> int:
        return len(self.session.hub)

    async def until_empty(self) -> None:
        async with asyncio.timeout(10):
            # Sessions end from the sockets' callbacks: nothing to wait on but the state.
            while self.connections or self.devices.online or self.session._finishing:  # noqa: ASYNC110
                await asyncio.sleep(0.01)


@pytest_asyncio.fixture(loop_scope="session")
async def gateway() -> AsyncIterator[Gateway]:
    """The real session handler; no chat service (only frames that need none are sent)."""
    unused = cast(Any, None)
    devices = Devices()
    session = Session(
        hub=Hub(4),
        chat=unused,
        guard=cast(Any, TokenIsUserId()),
        backfiller=Backfiller(unused, 500),
        send_limiter=unused,
        presence=cast(Any, devices),
        settings=GatewaySettings(max_frame_bytes=1024, close_grace_s=0.5),
        delivering=lambda: True,
    )
    app = web.Application()
    app.router.add_get("/v1/ws", session.handle)
    async with TestClient(TestServer(app)) as client:
        yield Gateway(client, session, devices)


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return cast(dict[str, Any], json.loads(msg.data))


async def test_a_session_talks_over_the_taken_socket_and_aiohttp_forgets_it(
    gateway: Gateway,
) -> None:
    user = uuid.uuid4()
    ws = await gateway.client.ws_connect(f"/v1/ws?token={user}", autoping=False)
    hello = await next_json(ws)
    assert hello["type"] == "hello"
    assert hello["user_id"] == str(user)
    assert gateway.connections == 1
    # aiohttp's server holds no state for the connection any more.
    server = gateway.client.server.runner.server
    assert server is not None
    assert server.connections == []

    await ws.send_str('{"type": "ping"}')
    assert await next_json(ws) == {"type": "pong"}
    await ws.ping(b"still here")
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"still here")
    await ws.send_bytes(b'{"type": "ping"}')
    assert (await next_json(ws))["code"] == "invalid_frame"

    await ws.close()
    assert ws.close_code == 1000
    await gateway.until_empty()


async def test_a_message_above_the_limit_closes_with_1009(gateway: Gateway) -> None:
    ws = await gateway.client.ws_connect(f"/v1/ws?token={uuid.uuid4()}")
    await next_json(ws)
    await ws.send_str('{"type": "ping", "padding": "' + "x" * 2000 + '"}')
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.CLOSE, msg
    assert ws.close_code == 1009
    await gateway.until_empty()


async def test_a_bad_token_is_closed_with_4001_after_the_upgrade(gateway: Gateway) -> None:
    ws = await gateway.client.ws_connect("/v1/ws?token=not-a-token")
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type is aiohttp.WSMsgType.CLOSE, msg
    assert ws.close_code == 4001
    assert gateway.connections == 0


async def test_frames_sent_right_behind_the_upgrade_request_are_not_lost(
    gateway: Gateway,
) -> None:
    """A client that does not wait for the 101: its first frames came with the request."""
    host, port = gateway.client.host, gateway.client.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET /v1/ws?token={uuid.uuid4()} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        + client_frame(Opcode.TEXT, b'{"type": "ping"}')
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # RFC 6455 1.3
    frames = b""
    while frames.count(b"\x81") < 2 or b"pong" not in frames:
        frames += await asyncio.wait_for(reader.read(4096), 10)
    assert b'"hello"' in frames
    assert b'{"type":"pong"}' in frames
    # A client that vanishes without a close frame ends its session too.
    writer.close()
    await gateway.until_empty()


async def test_a_client_that_breaks_the_protocol_is_closed_with_1002(gateway: Gateway) -> None:
    host, port = gateway.client.host, gateway.client.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET /v1/ws?token={uuid.uuid4()} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.write(client_frame(Opcode.TEXT, b'{"type": "ping"}', masked=False))
    # The client never answers the close: the gateway hangs up after its close grace.
    received = b""
    async with asyncio.timeout(10):
        while chunk := await reader.read(4096):
            received += chunk
    opcode, payload = server_frames(received)[-1]
    assert opcode == Opcode.CLOSE
    assert struct.unpack("!H", payload[:2])[0] == 1002
    writer.close()
    await gateway.until_empty()


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked frame in `data`."""
    frames = []
    while data:
        size, start = data[1] & 0x7F, 2
        if size == 126:
            size, start = struct.unpack("!H", data[2:4])[0], 4
        frames.append((data[0] & 0x0F, data[start : start + size]))
        data = data[start + size :]
    return frames
