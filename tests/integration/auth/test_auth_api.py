"""The auth HTTP API as clients see it, on real PostgreSQL and Redis: accounts, tokens, login
limits, authenticated lookups, the JWKS, and JSON errors for every kind of bad request."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from realchat.auth.api import create_app
from realchat.auth.tokens import InvalidToken, TokenIssuer, TokenVerifier
from tests.integration.auth.conftest import (
    ADDRESS_ATTEMPTS,
    ATTEMPTS,
    KEY_ID,
    NAME_ATTEMPTS,
    SIGNUPS,
    TTL_S,
    WINDOW_S,
    AuthUnderTest,
    auth_api,
    serve_app,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "correct horse battery"


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: Any = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any, Mapping[str, str]]:
    """Status, JSON body (every answer must be JSON) and headers of one request."""
    async with http.request(method, url, json=body, data=data, headers=headers) as response:
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json(), response.headers


def error(body: Any) -> str:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return str(body["error"]["code"])


def name() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


async def register(
    http: aiohttp.ClientSession, auth: AuthUnderTest, username: str, password: str = PASSWORD
) -> uuid.UUID:
    status, body, _ = await call(
        http, "POST", f"{auth.url}/v1/users", body={"username": username, "password": password}
    )
    assert status == 201, body
    return uuid.UUID(body["user_id"])


async def login(
    http: aiohttp.ClientSession,
    auth: AuthUnderTest,
    username: str,
    password: str = PASSWORD,
    address: str | None = None,
) -> tuple[int, Any, Mapping[str, str]]:
    headers = {"X-Forwarded-For": address} if address else None
    return await call(
        http,
        "POST",
        f"{auth.url}/v1/tokens",
        body={"username": username, "password": password},
        headers=headers,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_register_then_login_gives_a_token_that_verifies_with_the_public_key(
    http: aiohttp.ClientSession, auth: AuthUnderTest, pool: asyncpg.Pool
) -> None:
    username = name()
    status, body, _ = await call(
        http, "POST", f"{auth.url}/v1/users", body={"username": username, "password": PASSWORD}
    )
    assert status == 201
    assert body == {"user_id": body["user_id"], "username": username}
    user_id = uuid.UUID(body["user_id"])

    status, body, headers = await login(http, auth, username)
    assert status == 200
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == TTL_S
    assert headers["Cache-Control"] == "no-store"
    verifier = TokenVerifier({KEY_ID: auth.signing_key.public_key()}, "realchat", "realchat")
    assert verifier.verify(body["access_token"]) == user_id

    stored = await pool.fetchrow("SELECT username, password_hash FROM users")
    assert stored["username"] == username
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in stored["password_hash"]


async def test_usernames_are_case_insensitive_and_a_taken_name_is_409(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    username = name()
    status, body, _ = await call(
        http,
        "POST",
        f"{auth.url}/v1/users",
        body={"username": username.upper(), "password": PASSWORD},
    )
    assert (status, body["username"]) == (201, username)
    for taken in (username, username.upper()):
        status, body, _ = await call(
            http, "POST", f"{auth.url}/v1/users", body={"username": taken, "password": "other pw!"}
        )
        assert (status, error(body)) == (409, "username_taken")
    status, _, _ = await login(http, auth, username.upper())
    assert status == 200


async def test_concurrent_registrations_of_one_name_create_one_account(
    http: aiohttp.ClientSession, auth: AuthUnderTest, pool: asyncpg.Pool
) -> None:
    username = name()
    results = await asyncio.gather(
        *(
            call(
                http,
                "POST",
                f"{auth.url}/v1/users",
                body={"username": username, "password": PASSWORD},
            )
            for _ in range(8)
        )
    )
    assert sorted(status for status, _, _ in results) == [201] + [409] * 7
    assert await pool.fetchval("SELECT count(*) FROM users") == 1


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [
        ("ab", PASSWORD, "invalid_username"),
        ("a" * 33, PASSWORD, "invalid_username"),
        ("has space", PASSWORD, "invalid_username"),
        ("émile", PASSWORD, "invalid_username"),
        ("abc", "x" * 7, "invalid_password"),
        ("abc", "x" * 129, "invalid_password"),
    ],
)
async def test_names_and_passwords_breaking_the_rules_are_422(
    http: aiohttp.ClientSession, auth: AuthUnderTest, username: str, password: str, code: str
) -> None:
    status, body, _ = await call(
        http, "POST", f"{auth.url}/v1/users", body={"username": username, "password": password}
    )
    assert (status, error(body)) == (422, code)


async def test_boundary_lengths_are_accepted(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    await register(http, auth, "abc", "x" * 8)
    await register(http, auth, "a" * 32, "x" * 128)
    assert (await login(http, auth, "a" * 32, "x" * 128))[0] == 200


async def test_wrong_password_and_unknown_user_get_the_same_401(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    username = name()
    await register(http, auth, username)
    answers = [
        await login(http, auth, username, "wrong password", address="198.51.100.1"),
        await login(http, auth, name(), PASSWORD, address="198.51.100.2"),
        await login(http, auth, "x", "short", address="198.51.100.3"),
    ]
    assert [status for status, _, _ in answers] == [401, 401, 401]
    assert len({repr(body) for _, body, _ in answers}) == 1
    assert error(answers[0][1]) == "invalid_credentials"


async def test_guessing_one_account_from_one_address_is_limited_without_locking_its_owner_out(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    alice = name()
    await register(http, auth, alice)
    attacker, owner = "203.0.113.7", "203.0.113.8"
    for _ in range(ATTEMPTS):
        status, _, _ = await login(http, auth, alice, "wrong password", address=attacker)
        assert status == 401

    status, body, headers = await login(http, auth, alice, "wrong password", address=attacker)
    assert (status, error(body)) == (429, "too_many_attempts")
    assert 1 <= int(headers["Retry-After"]) <= WINDOW_S
    # While limited, even the right password is refused: guessing cannot just continue.
    assert (await login(http, auth, alice, PASSWORD, address=attacker))[0] == 429
    # The owner, elsewhere, is not locked out by someone else's failures.
    assert (await login(http, auth, alice, PASSWORD, address=owner))[0] == 200


async def test_spraying_many_accounts_from_one_address_is_limited(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    victims = [name() for _ in range(ADDRESS_ATTEMPTS + 1)]
    for victim in victims:
        await register(http, auth, victim)
    sprayer, elsewhere = "203.0.113.20", "203.0.113.21"
    answers = [
        (await login(http, auth, victim, "wrong password", address=sprayer))[0]
        for victim in victims
    ]
    assert answers == [401] * ADDRESS_ATTEMPTS + [429]
    assert (await login(http, auth, victims[0], PASSWORD, address=sprayer))[0] == 429
    assert (await login(http, auth, victims[0], PASSWORD, address=elsewhere))[0] == 200


async def test_distributed_guessing_at_one_account_spares_the_owners_known_address(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    alice = name()
    await register(http, auth, alice)
    home = "198.51.100.200"
    assert (await login(http, auth, alice, address=home))[0] == 200  # her known address
    for i in range(NAME_ATTEMPTS):
        status, _, _ = await login(http, auth, alice, "wrong", address=f"192.0.2.{i + 1}")
        assert status == 401
    # Every address that never logged in to alice is now refused, the right password too ...
    assert (await login(http, auth, alice, address="192.0.2.99"))[0] == 429
    # ... but alice at home logs in.
    assert (await login(http, auth, alice, address=home))[0] == 200


async def test_concurrent_guesses_are_counted_before_the_hash(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    alice = name()
    await register(http, auth, alice)
    guesses = [
        login(http, auth, alice, f"guess number {n}", address="203.0.113.30") for n in range(30)
    ]
    statuses = sorted(status for status, _, _ in await asyncio.gather(*guesses))
    assert statuses == [401] * ATTEMPTS + [429] * (30 - ATTEMPTS)


async def test_sign_ups_are_limited_per_address(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    async def sign_up(address: str) -> tuple[int, Any, Mapping[str, str]]:
        body = {"username": name(), "password": PASSWORD}
        headers = {"X-Forwarded-For": address}
        return await call(http, "POST", f"{auth.url}/v1/users", body=body, headers=headers)

    flood = "203.0.113.40"
    statuses = [(await sign_up(flood))[0] for _ in range(SIGNUPS)]
    assert statuses == [201] * SIGNUPS
    status, body, headers = await sign_up(flood)
    assert (status, error(body)) == (429, "too_many_signups")
    assert 1 <= int(headers["Retry-After"]) <= WINDOW_S
    assert (await sign_up("203.0.113.41"))[0] == 201


async def test_unlimited_addresses_have_no_per_address_budgets(
    http: aiohttp.ClientSession, pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """The local stack's tools all sign up from 127.0.0.1; behind a balancer nobody does."""
    issuer = TokenIssuer(Ed25519PrivateKey.generate(), KEY_ID, "realchat", "realchat", TTL_S)
    prefix = f"test:{uuid.uuid4().hex[:12]}"
    api = auth_api(pool, redis_client, issuer, prefix, unlimited_addresses=("198.51.100.77",))
    runner, url = await serve_app(create_app(api))
    auth = AuthUnderTest(url, issuer, Ed25519PrivateKey.generate(), prefix)
    try:
        for address, allowed in (("198.51.100.77", SIGNUPS + 5), ("198.51.100.78", SIGNUPS)):
            for _ in range(SIGNUPS + 5):
                status, _, _ = await call(
                    http,
                    "POST",
                    f"{url}/v1/users",
                    body={"username": name(), "password": PASSWORD},
                    headers={"X-Forwarded-For": address},
                )
                allowed -= status == 201
            assert allowed == 0, address
        victim = name()
        await register(http, auth, victim)
        for _ in range(ATTEMPTS + 2):  # no (name, address) budget either
            assert (await login(http, auth, victim, "wrong", address="198.51.100.77"))[0] == 401
    finally:
        await runner.cleanup()


async def test_the_limit_window_expires(
    http: aiohttp.ClientSession, auth: AuthUnderTest, redis_client: aioredis.Redis
) -> None:
    username = name()
    await register(http, auth, username)
    for _ in range(ATTEMPTS):
        await login(http, auth, username, "wrong password", address="198.51.100.9")
    assert (await login(http, auth, username, address="198.51.100.9"))[0] == 429
    key = f"{auth.limiter_prefix}:login:pair:{username}:198.51.100.9"
    assert 0 < await redis_client.ttl(key) <= WINDOW_S
    await redis_client.expire(key, 1)
    await asyncio.sleep(1.2)
    assert (await login(http, auth, username, address="198.51.100.9"))[0] == 200


async def test_a_successful_login_clears_the_count_of_its_address(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    username = name()
    await register(http, auth, username)
    for _ in range(2):
        for _ in range(ATTEMPTS - 1):
            status, _, _ = await login(http, auth, username, "wrong", address="198.51.100.10")
            assert status == 401
        assert (await login(http, auth, username, address="198.51.100.10"))[0] == 200


async def test_login_limits_fail_open_when_redis_is_unreachable(
    http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    redis = aioredis.Redis(host="127.0.0.1", port=closed_port, socket_connect_timeout=0.2)
    issuer = TokenIssuer(Ed25519PrivateKey.generate(), KEY_ID, "realchat", "realchat", TTL_S)
    api = auth_api(pool, redis, issuer, f"test:{uuid.uuid4().hex[:12]}")
    runner, url = await serve_app(create_app(api))
    auth = AuthUnderTest(url, issuer, Ed25519PrivateKey.generate(), "unused")
    try:
        username = name()
        with capture_logs() as logs:
            await register(http, auth, username)  # sign-ups are limited too: fails open
            for _ in range(ATTEMPTS + 1):
                assert (await login(http, auth, username, "wrong password"))[0] == 401
            assert (await login(http, auth, username))[0] == 200
    finally:
        await runner.cleanup()
        await redis.aclose()
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings
    assert all("rate limiter unavailable" in e["event"] for e in warnings)


async def test_lookup_by_username_needs_a_valid_token(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    username = name()
    user_id = await register(http, auth, username)
    token = (await login(http, auth, username))[1]["access_token"]
    url = f"{auth.url}/v1/users/by-username/{username}"

    status, body, _ = await call(http, "GET", url, headers=bearer(token))
    assert (status, body) == (200, {"user_id": str(user_id), "username": username})

    expired = TokenIssuer(
        auth.signing_key, KEY_ID, "realchat", "realchat", TTL_S, clock=lambda: time.time() - 7200
    ).issue(user_id)[0]
    foreign = TokenIssuer(
        Ed25519PrivateKey.generate(), KEY_ID, "realchat", "realchat", TTL_S
    ).issue(user_id)[0]
    refused: list[dict[str, str]] = [
        {},
        {"Authorization": token},
        {"Authorization": "Basic YWxpY2U6cHc="},
        bearer("not-a-token"),
        bearer(expired),
        bearer(foreign),
    ]
    for headers in refused:
        status, body, answer_headers = await call(http, "GET", url, headers=headers)
        assert (status, error(body)) == (401, "unauthorized"), headers
        assert answer_headers["WWW-Authenticate"].startswith("Bearer")


async def test_lookup_of_an_unknown_or_impossible_name_is_404(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    username = name()
    user_id = await register(http, auth, username)
    token = (await login(http, auth, username))[1]["access_token"]
    for missing in (name(), "no", "Not%20Valid"):
        status, body, _ = await call(
            http, "GET", f"{auth.url}/v1/users/by-username/{missing}", headers=bearer(token)
        )
        assert (status, error(body)) == (404, "user_not_found")
    status, body, _ = await call(
        http, "GET", f"{auth.url}/v1/users/by-username/{username.upper()}", headers=bearer(token)
    )
    assert (status, body["user_id"]) == (200, str(user_id))


@pytest.mark.parametrize("path", ["/v1/users", "/v1/tokens"])
@pytest.mark.parametrize("data", [b"", b"not json", b'{"username": "abc",', b"\xff\xfe\x00"])
async def test_a_body_that_is_not_json_is_400(
    http: aiohttp.ClientSession, auth: AuthUnderTest, path: str, data: bytes
) -> None:
    status, body, _ = await call(
        http, "POST", f"{auth.url}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    assert (status, error(body)) == (400, "invalid_json")


@pytest.mark.parametrize("path", ["/v1/users", "/v1/tokens"])
@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"username": 5, "password": PASSWORD}, "invalid_username"),
        ({"username": None, "password": PASSWORD}, "invalid_username"),
        ({"password": PASSWORD}, "invalid_username"),
        ({"username": "abcd", "password": 12345678}, "invalid_password"),
        ({"username": "abcd", "password": ["x" * 8]}, "invalid_password"),
        ({"username": "abcd"}, "invalid_password"),
        ([1, 2], "invalid_request"),
        ("abcd", "invalid_request"),
        (None, "invalid_request"),
    ],
)
async def test_json_of_the_wrong_shape_is_422(
    http: aiohttp.ClientSession, auth: AuthUnderTest, path: str, payload: Any, code: str
) -> None:
    status, body, _ = await call(
        http,
        "POST",
        f"{auth.url}{path}",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert (status, error(body)) == (422, code)


async def test_extra_fields_are_ignored(http: aiohttp.ClientSession, auth: AuthUnderTest) -> None:
    username = name()
    status, _, _ = await call(
        http,
        "POST",
        f"{auth.url}/v1/users",
        body={"username": username, "password": PASSWORD, "display_name": "A"},
    )
    assert status == 201


async def test_unknown_routes_wrong_methods_and_huge_bodies_get_json_errors(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    status, body, _ = await call(http, "GET", f"{auth.url}/v1/nothing-here")
    assert (status, error(body)) == (404, "not_found")
    status, body, headers = await call(http, "GET", f"{auth.url}/v1/users")
    assert (status, error(body)) == (405, "method_not_allowed")
    assert "POST" in headers["Allow"]
    status, body, _ = await call(
        http, "POST", f"{auth.url}/v1/users", data=b'{"username": "' + b"a" * 100_000 + b'"}'
    )
    assert (status, error(body)) == (413, "request_too_large")


async def test_jwks_serves_the_key_tokens_verify_with(
    http: aiohttp.ClientSession, auth: AuthUnderTest
) -> None:
    username = name()
    user_id = await register(http, auth, username)
    token = (await login(http, auth, username))[1]["access_token"]
    status, document, _ = await call(http, "GET", f"{auth.url}/.well-known/jwks.json")
    assert status == 200
    [entry] = document["keys"]
    assert (entry["kty"], entry["crv"], entry["alg"], entry["kid"]) == (
        "OKP",
        "Ed25519",
        "EdDSA",
        KEY_ID,
    )
    assert jwt.get_unverified_header(token)["kid"] == entry["kid"]
    verifier = TokenVerifier({entry["kid"]: jwt.PyJWK(entry).key}, "realchat", "realchat")
    assert verifier.verify(token) == user_id
    other = TokenIssuer(Ed25519PrivateKey.generate(), KEY_ID, "realchat", "realchat", TTL_S)
    with pytest.raises(InvalidToken):
        verifier.verify(other.issue(user_id)[0])
