"""`GET /v1/ws` before any session exists: refusals that are plain HTTP with the contract's JSON
error body, decided before the upgrade."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from realchat.config import GatewaySettings
from realchat.gateway.rest import errors_as_json
from realchat.gateway.websocket import Session

Client = TestClient[web.Request, web.Application]


@pytest_asyncio.fixture(loop_scope="session")
async def starting() -> AsyncIterator[Client]:
    """A gateway whose live delivery has no start positions yet (nothing else is reached)."""
    unused = cast(Any, None)
    session = Session(
        hub=unused,
        chat=unused,
        guard=unused,
        backfiller=unused,
        send_limiter=unused,
        presence=unused,
        settings=GatewaySettings(),
        delivering=lambda: False,
    )
    app = web.Application(middlewares=[errors_as_json])
    app.router.add_get("/v1/ws", session.handle)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.mark.asyncio(loop_scope="session")
async def test_an_upgrade_before_delivery_is_positioned_is_refused_with_503(
    starting: Client,
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await starting.ws_connect("/v1/ws?token=anything")
    assert refused.value.status == 503
    response = await starting.get(
        "/v1/ws?token=anything",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert (await response.json())["error"]["code"] == "gateway_unavailable"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_plain_get_is_a_json_400(starting: Client) -> None:
    response = await starting.get("/v1/ws?token=anything")
    assert response.status == 400
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"]["code"] == "websocket_upgrade_required"
    assert body["error"]["message"]
