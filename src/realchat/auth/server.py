"""The auth service process (`realchat auth-service`): the HTTP API plus its ops endpoint."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from realchat.auth.api import AuthApi, create_app
from realchat.auth.limits import AttemptLimiter, LoginLimits
from realchat.auth.passwords import Passwords
from realchat.auth.revocation import TokenVersions
from realchat.auth.service import AuthService, SignupLimits
from realchat.auth.store import AuthStore
from realchat.auth.tokens import (
    KeyConfigError,
    TokenIssuer,
    jwks,
    load_issuer,
    load_public_key,
)
from realchat.config import Settings
from realchat.notifier.api import PushApi
from realchat.notifier.preferences import PreferencesStore
from realchat.observability.ops import start_ops_server
from realchat.storage.migrations import schema_is_current
from realchat.storage.pool import create_pool
from realchat.storage.redis import redis_client

log = structlog.get_logger(__name__)

#: Seconds in-flight requests get to finish after a stop signal.
SHUTDOWN_GRACE_S = 5.0
#: A slow or absent Redis must not stall logins: the limiter fails open after this.
REDIS_TIMEOUT_S = 0.5


def build_api(
    settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    issuer: TokenIssuer,
    preferences: PreferencesStore,
) -> AuthApi:
    """Wire rules, storage, hashing, limits and tokens together; revoking a user's sessions
    also drops their devices' push tokens (`preferences`)."""
    auth = settings.auth
    limiter = AttemptLimiter(redis, known_ttl_s=auth.known_address_ttl_s, timeout_s=REDIS_TIMEOUT_S)
    login_limits = LoginLimits(
        per_name_and_address=auth.login_attempts,
        per_address=auth.login_address_attempts,
        per_name=auth.login_username_attempts,
        window_s=auth.login_window_s,
    )
    signup_limits = SignupLimits(auth.signups_per_address, auth.signup_window_s)
    passwords = Passwords(max_waiting=auth.hashing_queue)
    service = AuthService(
        AuthStore(pool),
        passwords,
        issuer,
        limiter,
        login_limits,
        signup_limits,
        TokenVersions(redis),
        auth.unlimited_addresses,
        on_revoked=preferences.unregister_all,
    )
    return AuthApi(
        service,
        issuer.verifier(),
        jwks(issuer.public_key, issuer.key_id),
        settings.auth.trusted_proxies,
    )


def push_api(settings: Settings, preferences: PreferencesStore, api: AuthApi) -> PushApi:
    """Devices' push tokens and notification settings: account data, served here, behind the
    same revocation-aware token check as the account routes."""
    return PushApi(preferences, api.authenticate, settings.notifier.max_devices_per_user)


def load_checked_issuer(settings: Settings) -> TokenIssuer:
    """The signer; if the verifiers' public key file is configured too, it must be this key's
    public half - otherwise every token issued would be refused everywhere else, so refuse to
    start instead."""
    issuer = load_issuer(settings.auth)
    path = settings.auth.public_key_file
    if path is not None:
        public = load_public_key(path, "REALCHAT_AUTH__PUBLIC_KEY_FILE")
        if public != issuer.public_key:
            raise KeyConfigError(
                "REALCHAT_AUTH__PUBLIC_KEY_FILE is not the public half of "
                "REALCHAT_AUTH__PRIVATE_KEY_FILE: tokens would not verify elsewhere"
            )
    return issuer


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, then drain in-flight requests and close everything."""
    issuer = load_checked_issuer(settings)  # a bad key fails before anything is connected
    async with contextlib.AsyncExitStack() as resources:
        pool = await create_pool(settings.database, "realchat-auth")
        resources.push_async_callback(pool.close)
        redis = redis_client(
            settings.redis.url, timeout_s=REDIS_TIMEOUT_S, connect_timeout_s=REDIS_TIMEOUT_S
        )
        resources.push_async_callback(redis.aclose)

        preferences = PreferencesStore(pool, settings.notifier.max_devices_per_user)
        api = build_api(settings, pool, redis, issuer, preferences)
        app = create_app(api)
        app.add_routes(push_api(settings, preferences, api).routes())
        runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=SHUTDOWN_GRACE_S,
        )
        await runner.setup()
        resources.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, settings.auth.http_host, settings.auth.http_port).start()

        async def ready() -> bool:
            return await schema_is_current(pool)

        ops = await start_ops_server(settings.ops_host, settings.auth.ops_port, ready)
        resources.push_async_callback(ops.cleanup)
        log.info(
            "auth service listening",
            http=f"{settings.auth.http_host}:{settings.auth.http_port}",
            ops_port=settings.auth.ops_port,
            key_id=issuer.key_id,
        )
        await stop.wait()
        log.info("auth service stopping")
