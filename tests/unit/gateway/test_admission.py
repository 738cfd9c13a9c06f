"""Connections per user and per client address: counted while open, loopback not counted."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from realchat.config import GatewaySettings
from realchat.forwarded import trusted_networks
from realchat.gateway.admission import ConnectionLimits
from realchat.gateway.rest import errors_as_json
from realchat.gateway.websocket import Session

LOOPBACK = trusted_networks(["127.0.0.0/8", "::1"])


def test_a_user_is_full_at_the_limit_and_free_again_once_one_closes() -> None:
    limits = ConnectionLimits(per_user=2, per_address=100, unlimited_addresses=LOOPBACK)
    user = uuid.uuid4()
    limits.opened(user, None)
    assert not limits.user_full(user)
    limits.opened(user, None)
    assert limits.user_full(user)
    assert not limits.user_full(uuid.uuid4())
    limits.closed(user, None)
    assert not limits.user_full(user)
    limits.closed(user, None)
    assert len(limits) == 0


def test_addresses_are_counted_except_the_unlimited_ones() -> None:
    limits = ConnectionLimits(per_user=100, per_address=1, unlimited_addresses=LOOPBACK)
    assert limits.counted_address("127.0.0.5") is None
    assert limits.counted_address(None) is None
    address = limits.counted_address("198.51.100.7")
    assert address == "198.51.100.7"
    limits.opened(uuid.uuid4(), address)
    assert limits.address_full(address)
    assert not limits.address_full("198.51.100.8")
    assert not limits.address_full(None)


@pytest.mark.asyncio(loop_scope="session")
async def test_an_address_at_its_limit_is_refused_before_the_upgrade() -> None:
    limits = ConnectionLimits(per_user=100, per_address=1, unlimited_addresses=LOOPBACK)
    limits.opened(uuid.uuid4(), "198.51.100.7")
    unused = cast(Any, None)
    session = Session(
        hub=unused,
        chat=unused,
        guard=unused,
        backfiller=unused,
        send_limiter=unused,
        presence=unused,
        settings=GatewaySettings(),
        delivering=lambda: True,
        limits=limits,
        trusted_proxies=LOOPBACK,  # the test client connects from loopback: "the balancer"
    )
    app = web.Application(middlewares=[errors_as_json])
    app.router.add_get("/v1/ws", session.handle)
    async with TestClient(TestServer(app)) as client:
        refused = await client.get("/v1/ws?token=x", headers={"X-Forwarded-For": "198.51.100.7"})
        assert refused.status == 429
        assert (await refused.json())["error"]["code"] == "too_many_connections"
        other = await client.get("/v1/ws?token=x", headers={"X-Forwarded-For": "198.51.100.8"})
        assert other.status == 400  # past the limit check: a plain GET, not an upgrade
