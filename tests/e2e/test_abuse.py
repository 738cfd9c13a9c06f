"""Attacks on accounts through the balancer, as an outsider would make them (issue: abuse
resistance). Each client comes from its own loopback source address (127.0.0.x, none of them a
trusted proxy), so HAProxy, the gateways and the auth service see distinct client addresses."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from realchat.client import Connected, RealChatClient
from tests.support.client import Device, User, connect, create_conversation, register, send_rest
from tests.support.scale_out import TwoGateways, two_gateways_stack
from tests.support.waiting import eventually_async

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

PASSWORD = "correct horse battery"
#: AuthSettings defaults: the stack runs with them.
LOGIN_ATTEMPTS = 10
SIGNUPS_PER_ADDRESS = 10


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def balanced(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TwoGateways]:
    with two_gateways_stack(tmp_path_factory.mktemp("abuse") / "stack") as stack:
        yield stack


def client_from(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body, headers=headers) as reply:
        return reply.status, await reply.json()


async def sign_up(stack: TwoGateways, address: str) -> str:
    username = f"u{uuid.uuid4().hex[:12]}"
    async with client_from(address) as http:
        status, body = await post(
            http, f"{stack.base_url}/v1/users", {"username": username, "password": PASSWORD}
        )
    assert status == 201, body
    return username


async def test_rotating_x_forwarded_for_does_not_escape_the_login_limit(
    balanced: TwoGateways,
) -> None:
    victim = await sign_up(balanced, "127.0.0.20")
    statuses = []
    async with client_from("127.0.0.21") as attacker:
        for n in range(LOGIN_ATTEMPTS + 2):
            status, _ = await post(
                attacker,
                f"{balanced.base_url}/v1/tokens",
                {"username": victim, "password": f"guess {n}"},
                {"X-Forwarded-For": f"198.51.100.{n + 1}"},  # a new "address" every time
            )
            statuses.append(status)
    assert statuses == [401] * LOGIN_ATTEMPTS + [429, 429]
    # The owner, from another address, is not locked out by the attacker's failures.
    async with client_from("127.0.0.22") as owner:
        status, body = await post(
            owner, f"{balanced.base_url}/v1/tokens", {"username": victim, "password": PASSWORD}
        )
    assert status == 200, body


async def test_concurrent_guesses_are_not_all_tried(balanced: TwoGateways) -> None:
    victim = await sign_up(balanced, "127.0.0.30")
    async with client_from("127.0.0.31") as attacker:
        replies = await asyncio.gather(
            *(
                post(
                    attacker,
                    f"{balanced.base_url}/v1/tokens",
                    {"username": victim, "password": f"concurrent guess {n}"},
                )
                for n in range(60)
            )
        )
    statuses = sorted(status for status, _ in replies)
    assert statuses.count(401) <= LOGIN_ATTEMPTS
    assert set(statuses) <= {401, 429, 503}  # 503: refused, "try again shortly", not tried


# -- consent in membership ---------------------------------------------------------------------


async def account(http: aiohttp.ClientSession, base: str, name: str) -> User:
    """A signed-up, logged-in user. The guessing tests above may leave the auth service's
    hashing queue full for a while on a busy machine (its hashes then take seconds each): its
    503s (`auth_busy`, or the gateway's `auth_unavailable` when it did not answer in time) say
    to try again shortly, and this does, for up to two minutes."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return await register(http, base, name)
        except AssertionError as refused:
            retriable = "auth_busy" in str(refused) or "auth_unavailable" in str(refused)
            if not retriable or time.monotonic() > deadline:
                raise
        await asyncio.sleep(1)


async def presence_of(
    http: aiohttp.ClientSession, base: str, viewer: User, *users: User
) -> dict[str, str]:
    ids = ",".join(u.user_id for u in users)
    async with http.get(f"{base}/v1/presence?user_ids={ids}", headers=viewer.auth) as reply:
        assert reply.status == 200, await reply.text()
        return {p["user_id"]: p["status"] for p in (await reply.json())["users"]}


async def delete(http: aiohttp.ClientSession, url: str, user: User) -> tuple[int, str]:
    async with http.delete(url, headers=user.auth) as reply:
        return reply.status, await reply.text()


async def test_forced_co_membership_reveals_nothing_once_the_victim_leaves(
    balanced: TwoGateways,
) -> None:
    base = balanced.base_url
    async with aiohttp.ClientSession() as http:
        mallory = await account(http, base, "mallory")
        victim = await account(http, base, "victim")
        friend = await account(http, base, "friend")
        # The victim is online on gateway 2; mallory watches from gateway 1.
        victims_device = await connect(http, balanced.gateway_url(2), victim)
        mallorys_device = await connect(http, balanced.gateway_url(1), mallory)
        forced = await create_conversation(http, base, mallory, victim)
        seen = await eventually_async(
            lambda: presence_of(http, base, mallory, victim),
            lambda found: found.get(victim.user_id) == "online",
            30,
        )
        assert seen == {victim.user_id: "online"}, "the attack's premise: co-members see it"

        status, body = await delete(
            http, f"{base}/v1/conversations/{forced}/members/{victim.user_id}", victim
        )
        assert status == 204, body
        assert await presence_of(http, base, mallory, victim) == {}
        # Both gateways hear of the leave: each connection gets the member frame.
        for device in (victims_device, mallorys_device):
            await device.wait(lambda d: d.of_type("member"), timeout_s=10)
            assert device.of_type("member")[0] == {
                "type": "member",
                "conversation_id": forced,
                "change": "left",
                "user_ids": [victim.user_id],
                "by": victim.user_id,
            }
        # Nothing of the conversation reaches the victim any more: not live, not by history.
        after = await send_rest(http, base, mallory, forced, "after the leave")
        elsewhere = await create_conversation(http, base, friend, victim)
        await send_rest(http, base, friend, elsewhere, "marker")
        await victims_device.wait(lambda d: d.seqs(elsewhere) == [1], timeout_s=10)
        assert victims_device.seqs(forced) == [], after
        url = f"{base}/v1/conversations/{forced}/messages"
        async with http.get(url, headers=victim.auth) as reply:
            assert reply.status == 403
        # And mallory cannot simply put the victim back after a block.
        async with http.put(f"{base}/v1/blocks/{mallory.user_id}", headers=victim.auth) as r:
            assert r.status == 204, await r.text()
        add = {"user_ids": [victim.user_id]}
        async with http.post(
            f"{base}/v1/conversations/{forced}/members", json=add, headers=mallory.auth
        ) as reply:
            assert reply.status == 403
            assert (await reply.json())["error"]["code"] == "blocked"
        for device in (victims_device, mallorys_device):
            await device.close()


async def test_a_block_hides_presence_both_ways_even_in_a_shared_conversation(
    balanced: TwoGateways,
) -> None:
    base = balanced.base_url
    async with aiohttp.ClientSession() as http:
        mallory = await account(http, base, "mallory")
        victim = await account(http, base, "victim")
        devices = [
            await connect(http, balanced.gateway_url(1), victim),
            await connect(http, balanced.gateway_url(2), mallory),
        ]
        await create_conversation(http, base, mallory, victim)
        await eventually_async(
            lambda: presence_of(http, base, mallory, victim),
            lambda found: found.get(victim.user_id) == "online",
            30,
        )
        async with http.put(f"{base}/v1/blocks/{mallory.user_id}", headers=victim.auth) as r:
            assert r.status == 204, await r.text()
        assert await presence_of(http, base, mallory, victim) == {}
        assert await presence_of(http, base, victim, mallory) == {}
        async with http.get(f"{base}/v1/blocks", headers=victim.auth) as reply:
            assert (await reply.json()) == {"user_ids": [mallory.user_id]}
        body = {"member_ids": [victim.user_id]}
        async with http.post(f"{base}/v1/conversations", json=body, headers=mallory.auth) as r:
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "blocked"
        for device in devices:
            await device.close()


async def test_made_up_member_ids_are_refused_with_a_bounded_error(
    balanced: TwoGateways,
) -> None:
    base = balanced.base_url
    async with aiohttp.ClientSession() as http:
        mallory = await account(http, base, "mallory")
        made_up = {"member_ids": [str(uuid.uuid4()) for _ in range(999)]}
        async with http.post(f"{base}/v1/conversations", json=made_up, headers=mallory.auth) as r:
            assert r.status == 422
            text = await r.text()
        assert (await r.json())["error"]["code"] == "unknown_users"
        assert len(text) < 1024, "the refusal names a few ids, not all of them"
        too_many = {"member_ids": [str(uuid.uuid4()) for _ in range(1000)]}
        async with http.post(f"{base}/v1/conversations", json=too_many, headers=mallory.auth) as r:
            assert r.status == 422
        async with http.get(f"{base}/v1/conversations", headers=mallory.auth) as reply:
            assert (await reply.json())["conversations"] == []


async def test_a_user_in_many_conversations_lists_and_syncs_them_page_by_page(
    balanced: TwoGateways,
) -> None:
    base = balanced.base_url
    count = 205  # past the gateway's page of 200 and the REST default of 100
    async with aiohttp.ClientSession() as http:
        alice = await account(http, base, "alice")
        created = set(
            await asyncio.gather(*(create_conversation(http, base, alice) for _ in range(count)))
        )
        listed: list[str] = []
        cursor = ""
        pages = 0
        while True:
            query = f"?cursor={cursor}" if cursor else ""
            async with http.get(f"{base}/v1/conversations{query}", headers=alice.auth) as r:
                page = await r.json()
            pages += 1
            assert len(page["conversations"]) <= 100
            listed.extend(c["conversation_id"] for c in page["conversations"])
            if page["next_cursor"] is None:
                break
            cursor = page["next_cursor"]
        assert pages == 3
        assert sorted(listed) == sorted(created)
        device = await connect(http, base, alice)
        await device.send({"type": "sync"})
        await device.wait(lambda d: d.of_type("sync_done"), timeout_s=30)
        assert set(device.of_type("sync_done")[0]["positions"]) == created
        await device.close()


# -- revocable sessions ------------------------------------------------------------------------


async def closed_within(device: Device, timeout_s: float) -> tuple[int | None, float]:
    """The close code the server gave the device's WebSocket, and how long it took."""
    started = time.monotonic()
    assert device.reader is not None
    await asyncio.wait_for(asyncio.shield(device.reader), timeout_s)
    return device.ws.close_code, time.monotonic() - started


async def test_logout_closes_every_open_websocket_of_the_user_within_a_second(
    balanced: TwoGateways,
) -> None:
    base = balanced.base_url
    async with aiohttp.ClientSession() as http:
        alice = await account(http, base, "alice")
        async with http.post(
            f"{base}/v1/tokens", json={"username": alice.username, "password": PASSWORD}
        ) as r:
            second_token = (await r.json())["access_token"]
        phone = await connect(http, balanced.gateway_url(1), alice)
        laptop = await connect(
            http, balanced.gateway_url(2), User(alice.user_id, alice.username, second_token)
        )
        status, body = await delete(http, f"{base}/v1/tokens", alice)
        assert status == 204, body
        closes = await asyncio.gather(closed_within(phone, 1.0), closed_within(laptop, 1.0))
        print(f"revoked sessions closed after {[round(t, 3) for _, t in closes]} s")
        assert [code for code, _ in closes] == [4001, 4001]
        # The revoked tokens are refused everywhere: REST, a new WebSocket, a second logout.
        for token in (alice.token, second_token):
            stale = User(alice.user_id, alice.username, token)
            async with http.get(f"{base}/v1/conversations", headers=stale.auth) as reply:
                assert reply.status == 401
            again = await connect(http, balanced.gateway_url(2), stale, hello=False)
            assert (await closed_within(again, 5.0))[0] == 4001
            assert (await delete(http, f"{base}/v1/tokens", stale))[0] == 401
        # Logging in again works (a fresh token of the new version).
        fresh = await register_login(http, base, alice)
        async with http.get(f"{base}/v1/conversations", headers=fresh.auth) as reply:
            assert reply.status == 200


async def register_login(http: aiohttp.ClientSession, base: str, user: User) -> User:
    credentials = {"username": user.username, "password": PASSWORD}
    async with http.post(f"{base}/v1/tokens", json=credentials) as reply:
        assert reply.status == 200, await reply.text()
        return User(user.user_id, user.username, (await reply.json())["access_token"])


async def test_a_password_change_revokes_the_old_tokens_and_the_old_password(
    balanced: TwoGateways,
) -> None:
    base = balanced.base_url
    new_password = "a brand new passphrase"
    async with aiohttp.ClientSession() as http:
        alice = await account(http, base, "alice")
        device = await connect(http, balanced.gateway_url(1), alice)
        url = f"{base}/v1/users/me/password"
        wrong = {"current_password": "not the password", "new_password": new_password}
        async with http.put(url, json=wrong, headers=alice.auth) as reply:
            assert reply.status == 401
        right = {"current_password": PASSWORD, "new_password": new_password}
        async with http.put(url, json=right, headers=alice.auth) as reply:
            assert reply.status == 204, await reply.text()
        assert (await closed_within(device, 1.0))[0] == 4001
        async with http.get(f"{base}/v1/conversations", headers=alice.auth) as reply:
            assert reply.status == 401
        for password, expected in ((PASSWORD, 401), (new_password, 200)):
            credentials = {"username": alice.username, "password": password}
            async with http.post(f"{base}/v1/tokens", json=credentials) as reply:
                assert reply.status == expected


async def test_the_sdk_carries_on_after_a_logout_elsewhere(balanced: TwoGateways) -> None:
    """A logout on another device revokes this client's token too: its WebSocket is closed
    with 4001, and the client logs in again with its credentials and carries on."""
    base = balanced.base_url
    async with aiohttp.ClientSession() as http:
        alice = await account(http, base, "alice")
        bob = await account(http, base, "bob")
        room = await create_conversation(http, base, bob, alice)
        client = await RealChatClient.login(base, alice.username, PASSWORD)
        async with client:
            await client.wait_ready(timeout_s=30)
            events = client.events()
            status, body = await delete(http, f"{base}/v1/tokens", alice)
            assert status == 204, body
            async with asyncio.timeout(30):
                async for event in events:
                    if isinstance(event, Connected) and event.connection == 2:
                        break
            assert client.tokens.renewals >= 1
            await send_rest(http, base, bob, room, "after the logout elsewhere")
            received = await asyncio.wait_for(anext(client.messages()), 30)
            assert received.content == "after the logout elsewhere"
            sent = await client.send(room, "still here")
            assert sent.seq == 2


# -- connections -------------------------------------------------------------------------------

#: GatewaySettings default: WebSockets per user per gateway instance.
CONNECTIONS_PER_USER = 32


async def test_one_user_cannot_open_connections_without_bound(balanced: TwoGateways) -> None:
    base = balanced.base_url
    async with aiohttp.ClientSession() as http:
        hoarder = await account(http, base, "hoarder")
        gateway = balanced.gateway_url(1)
        held = [await connect(http, gateway, hoarder) for _ in range(CONNECTIONS_PER_USER)]
        extra = await connect(http, gateway, hoarder, hello=False)
        code, _ = await closed_within(extra, 10.0)
        assert code == 1008
        assert extra.of_type("hello") == []
        # Another user is not affected, and one closed connection makes room again.
        other = await account(http, base, "other")
        await (await connect(http, gateway, other)).close()
        await held.pop().close()
        replacement = await eventually_async(
            lambda: connect_or_refused(http, gateway, hoarder),
            lambda device: device is not None,
            10,
        )
        assert replacement is not None, "a closed connection did not make room"
        for device in [*held, replacement]:
            await device.close()


async def connect_or_refused(http: aiohttp.ClientSession, base: str, user: User) -> Device | None:
    """A session that got its hello, or None if the server closed it instead."""
    device = await connect(http, base, user, hello=False)
    assert device.reader is not None
    hello = asyncio.create_task(device.wait(lambda d: d.of_type("hello"), timeout_s=10))
    await asyncio.wait([hello, device.reader], return_when=asyncio.FIRST_COMPLETED)
    if hello.done() and not hello.exception():
        return device
    hello.cancel()
    return None


# -- last: it leaves the auth service's hashing queue full for a while ---------------------------


async def test_a_sign_up_flood_leaves_logins_answering(balanced: TwoGateways) -> None:
    """A login overtakes the sign-ups queued for the password hasher: it is answered while
    accounts accepted before it are still being created (in arrival order it would wait for all
    of them). Judged by order, not by seconds, so a busy machine does not decide it."""
    user = await sign_up(balanced, "127.0.0.40")
    flood_addresses = [f"127.0.1.{n}" for n in range(1, 13)]
    created_at: list[float] = []
    hashing = asyncio.Event()

    async def sign_up_once(http: aiohttp.ClientSession) -> int:
        body = {"username": f"f{uuid.uuid4().hex[:12]}", "password": PASSWORD}
        status, _ = await post(http, f"{balanced.base_url}/v1/users", body)
        if status == 201:
            created_at.append(time.monotonic())
            hashing.set()
        return status

    async def flood_from(address: str) -> list[int]:
        async with client_from(address) as http:
            return list(
                await asyncio.gather(*(sign_up_once(http) for _ in range(SIGNUPS_PER_ADDRESS + 5)))
            )

    flood = asyncio.gather(*(flood_from(a) for a in flood_addresses))
    await asyncio.wait_for(hashing.wait(), 120)  # the hasher is busy and sign-ups queue behind
    async with client_from("127.0.0.41") as http:
        started = time.monotonic()
        status, body = await post(
            http, f"{balanced.base_url}/v1/tokens", {"username": user, "password": PASSWORD}
        )
        answered = time.monotonic()
    flooded = [s for statuses in await flood for s in statuses]
    created_after = sum(1 for t in created_at if t > answered)
    print(
        f"login during the sign-up flood: {answered - started:.3f} s, {created_after} of "
        f"{len(created_at)} accounts created after it; flood answers {Counter(flooded)}"
    )
    assert status == 200, body
    assert created_after > 0, "the login waited for every queued sign-up"
    assert answered - started < 10, "liveness only: ~0.8 s here, the issue's 2 s is reported"
    assert 429 in flooded
