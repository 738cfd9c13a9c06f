"""Auth fixtures on the real test stack: a fresh migrated database per test, the shared Redis
(with a per-test key prefix, so rate limits never leak between tests), and the auth HTTP API
served in-process on a free port."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from realchat.auth.api import AuthApi, create_app
from realchat.auth.limits import AttemptLimiter, LoginLimits
from realchat.auth.passwords import Passwords
from realchat.auth.revocation import TokenVersions
from realchat.auth.service import AuthService, SignupLimits
from realchat.auth.store import AuthStore
from realchat.auth.tokens import TokenIssuer, jwks
from realchat.stack.supervisor import Stack
from tests.support.databases import fresh_database, utc_pool

KEY_ID = "test-key"
TTL_S = 900
#: Failed logins allowed per name / address in the tests.
#: Login attempts per (username, address), per address, per username from unknown addresses.
ATTEMPTS = 3
ADDRESS_ATTEMPTS = 6
NAME_ATTEMPTS = 5
WINDOW_S = 60
#: Sign-ups per address per window.
SIGNUPS = 20
#: Cheap argon2id parameters: the tests exercise behaviour, not hashing cost.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@dataclass
class AuthUnderTest:
    url: str
    issuer: TokenIssuer
    signing_key: Ed25519PrivateKey
    limiter_prefix: str


@pytest_asyncio.fixture(loop_scope="session")
async def db_dsn(stack: Stack) -> AsyncIterator[str]:
    async with fresh_database(stack.postgres) as dsn:
        yield dsn


@pytest_asyncio.fixture(loop_scope="session")
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    created = await utc_pool(db_dsn)
    try:
        yield created
    finally:
        await created.close()


@pytest_asyncio.fixture(loop_scope="session")
async def redis_client(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(stack.redis.url)
    try:
        yield client
    finally:
        await client.aclose()


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def auth_api(
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    issuer: TokenIssuer,
    limiter_prefix: str,
    unlimited_addresses: tuple[str, ...] = (),
) -> AuthApi:
    limiter = AttemptLimiter(redis, prefix=limiter_prefix)
    limits = LoginLimits(ATTEMPTS, ADDRESS_ATTEMPTS, NAME_ATTEMPTS, WINDOW_S)
    service = AuthService(
        AuthStore(pool),
        Passwords(FAST_HASHER),
        issuer,
        limiter,
        limits,
        SignupLimits(SIGNUPS, WINDOW_S),
        TokenVersions(redis),
        unlimited_addresses,
    )
    return AuthApi(
        service,
        issuer.verifier(),
        jwks(issuer.public_key, issuer.key_id),
        trusted_proxies=["127.0.0.1"],
    )


@pytest_asyncio.fixture(loop_scope="session")
async def auth(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[AuthUnderTest]:
    """The real auth API (rules, SQL, Redis limits) on a free loopback port."""
    key = Ed25519PrivateKey.generate()
    issuer = TokenIssuer(key, KEY_ID, "realchat", "realchat", TTL_S)
    prefix = f"test:{uuid.uuid4().hex[:12]}:login-fail"
    runner, url = await serve_app(create_app(auth_api(pool, redis_client, issuer, prefix)))
    try:
        yield AuthUnderTest(url, issuer, key, prefix)
    finally:
        await runner.cleanup()
        keys = [k async for k in redis_client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis_client.delete(*keys)


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
