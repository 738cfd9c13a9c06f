"""Token renewal: proactive before expiry (a fake clock), once after a refusal (a scripted
server that refuses the old token with 4001 until a new one is presented)."""

from __future__ import annotations

import asyncio

import pytest

from realchat.client import Disconnected, RealChatClient, Token, Unauthorized
from realchat.client.tokens import TokenSource
from tests.unit.client.fake_server import DEADLINE_S, FakeConnection, FakeServer
from tests.unit.client.test_client_scripted import (
    OPTIONS,
    C,
    in_c,
    plain_sync,
    take,
    take_messages,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Issuer:
    """A token provider handing out t2, t3, ... (as `Token`s living `expires_in` seconds)."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.issued: list[str] = []
        self.expires_in = expires_in

    async def __call__(self) -> Token:
        token = f"t{len(self.issued) + 2}"
        self.issued.append(token)
        return Token(token, self.expires_in)


async def test_a_token_is_renewed_a_tenth_of_its_lifetime_before_it_expires() -> None:
    now = [1000.0]
    issuer = Issuer(expires_in=100)
    tokens = TokenSource("t1", issuer, expires_in=100, clock=lambda: now[0])
    now[0] += 89.9
    assert await tokens.current() == "t1"
    now[0] += 0.2  # 9.9 s left: less than a tenth of 100 s
    assert await tokens.current() == "t2"
    now[0] += 89.9
    assert await tokens.current() == "t2"  # t2 has its own 100 s from its issue
    assert issuer.issued == ["t2"]


async def test_an_hour_long_token_is_renewed_a_minute_before_it_expires() -> None:
    now = [0.0]
    tokens = TokenSource("t1", Issuer(), expires_in=3600, clock=lambda: now[0])
    now[0] = 3539.0
    assert await tokens.current() == "t1"
    now[0] = 3541.0
    assert await tokens.current() == "t2"


async def test_a_fixed_token_is_never_renewed_and_its_refusal_is_final() -> None:
    tokens = TokenSource("t1")
    assert await tokens.current() == "t1"
    assert not await tokens.renew_after_refusal("t1")
    with pytest.raises(ValueError, match="token"):
        TokenSource(None)


async def test_concurrent_refusals_of_the_same_token_renew_it_once() -> None:
    issuer = Issuer()
    tokens = TokenSource("t1", issuer)
    assert await asyncio.gather(*(tokens.renew_after_refusal("t1") for _ in range(3))) == [True] * 3
    assert issuer.issued == ["t2"]
    assert await tokens.current() == "t2"


async def test_a_reconnect_refused_with_4001_renews_the_token_and_loses_nothing() -> None:
    issuer = Issuer()

    async def first(conn: FakeConnection) -> None:
        assert conn.token == "t1"
        await conn.hello()
        await conn.expect("sync")
        await conn.messages(C, 1, 2)
        await conn.sync_done({C: 2})
        await conn.messages(C, 3)
        await conn.close(1001, "restarting")  # ...and the old token expired meanwhile

    async def expired(conn: FakeConnection) -> None:
        assert conn.token == "t1"
        await conn.close(4001, "token expired")

    async def renewed(conn: FakeConnection) -> None:
        assert conn.token == "t2"
        await conn.hello()
        assert (await conn.expect("sync"))["positions"] == {C: 3}
        await conn.messages(C, 4)
        await conn.sync_done({C: 4})
        await conn.messages(C, 5)

    async with FakeServer([first, expired, renewed], [C]) as server:
        client = RealChatClient(server.base_url, "t1", token_provider=issuer, options=OPTIONS)
        async with client:
            assert await take_messages(client.messages(), 5) == in_c(1, 2, 3, 4, 5)
            await server.script_done(2)
            assert issuer.issued == ["t2"]
            assert server.listing_tokens == ["t2"]  # the REST call after it too
            events = await take(client.events(), 4)
            refused = events[2]
            assert isinstance(refused, Disconnected)
            assert refused.code == 4001
            assert refused.reconnect_in is not None
        assert server.errors == []


async def test_a_renewed_token_that_is_refused_too_stops_the_client() -> None:
    issuer = Issuer()

    async def refuse(conn: FakeConnection) -> None:
        await conn.close(4001, "no")

    async with FakeServer([refuse, refuse]) as server:
        client = RealChatClient(server.base_url, "t1", token_provider=issuer, options=OPTIONS)
        async with client:
            with pytest.raises(Unauthorized, match="4001"):
                await client.wait_ready(timeout_s=DEADLINE_S)
        assert [c.token for c in server.connections] == ["t1", "t2"]
        assert issuer.issued == ["t2"]
        assert server.errors == []


async def test_a_client_without_a_token_gets_one_from_its_provider_first() -> None:
    issuer = Issuer()

    async def script(conn: FakeConnection) -> None:
        assert conn.token == "t2"
        await conn.hello()
        await conn.expect("sync")
        await conn.sync_done({})

    async with FakeServer([script]) as server:
        async with RealChatClient(server.base_url, token_provider=issuer, options=OPTIONS) as c:
            await c.wait_ready(timeout_s=DEADLINE_S)
        assert server.errors == []


async def test_a_reconnect_after_the_token_expired_presents_a_renewed_one_at_once() -> None:
    issuer = Issuer()

    async def first(conn: FakeConnection) -> None:
        assert conn.token == "t1"
        await plain_sync(conn, {C: 0})
        await asyncio.sleep(0.3)  # the clock must pass the token's renewal time (0.18 s)
        await conn.close(1001, "restarting")

    async def second(conn: FakeConnection) -> None:
        assert conn.token == "t2"  # renewed before the attempt: no refusal needed
        await conn.hello()
        await conn.expect("sync")
        await conn.sync_done({C: 0})

    async with FakeServer([first, second], [C]) as server:
        client = RealChatClient(
            server.base_url, "t1", token_provider=issuer, token_expires_in=0.2, options=OPTIONS
        )
        async with client:
            await server.script_done(1)
            assert issuer.issued == ["t2"]
            assert len(server.connections) == 2
        assert server.errors == []
