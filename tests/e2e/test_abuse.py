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

from tests.support.scale_out import TwoGateways, two_gateways_stack

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


async def test_a_sign_up_flood_leaves_logins_answering(balanced: TwoGateways) -> None:
    user = await sign_up(balanced, "127.0.0.40")
    flood_addresses = [f"127.0.1.{n}" for n in range(1, 13)]

    async def flood_from(address: str) -> list[int]:
        async with client_from(address) as http:
            replies = await asyncio.gather(
                *(
                    post(
                        http,
                        f"{balanced.base_url}/v1/users",
                        {"username": f"f{uuid.uuid4().hex[:12]}", "password": PASSWORD},
                    )
                    for _ in range(SIGNUPS_PER_ADDRESS + 5)
                )
            )
        return [status for status, _ in replies]

    flood = asyncio.gather(*(flood_from(a) for a in flood_addresses))
    await asyncio.sleep(0.2)  # the flood is under way (its hashing queue fills)
    async with client_from("127.0.0.41") as http:
        started = time.monotonic()
        status, body = await post(
            http, f"{balanced.base_url}/v1/tokens", {"username": user, "password": PASSWORD}
        )
        took = time.monotonic() - started
    flooded = [s for statuses in await flood for s in statuses]
    print(f"login during the sign-up flood: {took:.3f} s; flood answers {Counter(flooded)}")
    assert status == 200, body
    assert took < 2.0, f"a login took {took:.2f} s during the sign-up flood"
    # Every address got at most its budget of accounts; the rest were refused, not queued.
    assert flooded.count(201) <= SIGNUPS_PER_ADDRESS * len(flood_addresses)
    assert set(flooded) <= {201, 429, 503}
    assert 429 in flooded
