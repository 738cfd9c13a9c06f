"""Heartbeat and idle timeout on a real gateway with a fast heartbeat (0.5 s) and a short idle
timeout (2 s): a client that stops answering pings gets close 4002 and then loses its TCP
connection, with no error in the gateway's log; a client that answers pings but sends nothing
stays connected (it is a listener, not a dead peer)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.conftest import RealChat
from tests.support.client import register
from tests.support.gateways import ExtraGateway, extra_gateway
from tests.support.rawws import OP_PONG, OP_TEXT, RawWebSocket

pytestmark = pytest.mark.asyncio(loop_scope="session")

HEARTBEAT_S = 0.5
IDLE_S = 2.0
GRACE_S = 1.0
IDLE_CLOSES = 'realchat_gateway_disconnects_total{reason="idle_timeout"}'


class CountingWebSocket(RawWebSocket):
    """A raw client that counts the pongs it sends and, when `deaf`, never sends them."""

    deaf = False
    pongs = 0

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PONG:
            if self.deaf:
                return
            self.pongs += 1
        await super().send_frame(opcode, payload)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def quick(
    realchat: RealChat, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ExtraGateway]:
    async with extra_gateway(
        realchat.services,
        tmp_path_factory.mktemp("quick-heartbeat-gateway"),
        heartbeat_s=HEARTBEAT_S,
        idle_timeout_s=IDLE_S,
        close_grace_s=GRACE_S,
    ) as gateway:
        yield gateway


async def connected(gateway: ExtraGateway, token: str) -> CountingWebSocket:
    client = await CountingWebSocket.connect(f"{gateway.base_url}/v1/ws?token={token}")
    hello = await client.recv()
    assert hello is not None
    assert hello.json()["type"] == "hello"
    assert hello.json()["heartbeat_s"] == HEARTBEAT_S
    return client


async def test_a_client_that_stops_answering_pings_is_closed_with_4002_then_dropped(
    realchat: RealChat, http: aiohttp.ClientSession, quick: ExtraGateway
) -> None:
    user = await register(http, realchat.base_url, "deaf")
    before = (await quick.metrics(http)).get(IDLE_CLOSES, 0.0)
    client = await connected(quick, user.token)
    client.deaf = True
    started = time.monotonic()
    try:
        frames, ended = await client.drain(timeout_s=IDLE_S + 15)
        closed_after = time.monotonic() - started
        assert ended == "close 4002", (frames, ended)
        assert frames[-1].payload[2:] == b"idle timeout"
        # Not before the idle timeout (its pings went unanswered all along), not much after.
        assert IDLE_S - 0.1 <= closed_after <= IDLE_S + 10, closed_after
        # It never answers the close frame either: the TCP connection goes after the grace.
        assert await asyncio.wait_for(client.recv(), GRACE_S + 10) is None
    finally:
        client.close()
    metrics = await quick.metrics(http)
    assert metrics.get(IDLE_CLOSES, 0.0) == before + 1
    log = quick.process.log_text()
    assert "Traceback" not in log
    assert "Error handling request" not in log


async def test_a_client_that_answers_pings_but_sends_nothing_stays_connected(
    realchat: RealChat, http: aiohttp.ClientSession, quick: ExtraGateway
) -> None:
    user = await register(http, realchat.base_url, "listener")
    client = await connected(quick, user.token)
    try:
        # It only reads (which answers the gateway's pings) for three idle timeouts: the
        # absence of a close over that span is the point, so this one waits on time.
        reader = asyncio.create_task(client.recv())
        done, _ = await asyncio.wait([reader], timeout=3 * IDLE_S)
        assert not done, reader.result()
        assert client.pongs >= 3, client.pongs  # pinged all along, about every 0.5 s
        await client.send_json({"type": "ping"})
        pong = await asyncio.wait_for(reader, 10)
        assert pong is not None
        assert (pong.opcode, pong.json()) == (OP_TEXT, {"type": "pong"})
    finally:
        client.close()
