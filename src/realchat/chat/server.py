"""The chat service process: gRPC (chat API, health, reflection) plus its ops endpoint."""

from __future__ import annotations

import asyncio

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from realchat.auth.tokens import load_verifier
from realchat.chat.api import ChatServicer
from realchat.chat.group_commit import GroupCommitLimits
from realchat.chat.identity import (
    Authenticator,
    FirstOf,
    InternalCredential,
    TokenAuthenticator,
    TokenVersionOf,
)
from realchat.chat.send_limit import DirectSendLimit
from realchat.chat.service import ChatService
from realchat.chat.store import SESSION_SETTINGS, ChatStore
from realchat.chat.v1 import chat_pb2, chat_pb2_grpc
from realchat.config import Settings
from realchat.gateway.ratelimit import SendLimiter
from realchat.observability.ops import start_ops_server
from realchat.outbox.wakeup import CommitNotifier
from realchat.storage.migrations import schema_is_current
from realchat.storage.pool import create_pool
from realchat.storage.redis import redis_client

log = structlog.get_logger(__name__)

SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name


def internal_credential(settings: Settings) -> InternalCredential:
    token = settings.chat.internal_token
    if token is None:
        raise RuntimeError("REALCHAT_CHAT__INTERNAL_TOKEN is not set")
    return InternalCredential(token.get_secret_value())


def authenticator(settings: Settings, version_of: TokenVersionOf | None = None) -> Authenticator:
    """The internal credential always; user access tokens too once a public key is configured
    (`REALCHAT_AUTH__PUBLIC_KEY_FILE`), refused once revoked (`version_of`)."""
    internal = internal_credential(settings)
    if settings.auth.public_key_file is None:
        return internal
    return FirstOf(internal, TokenAuthenticator(load_verifier(settings.auth), version_of))


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    authenticator(settings)  # a bad key fails before anything is connected
    pool = await create_pool(settings.database, "realchat-chat", SESSION_SETTINGS, stateless=True)
    chat = settings.chat
    store = ChatStore(pool, chat.outbox_shards)
    auth = authenticator(settings, store.token_version)
    notifier = CommitNotifier(pool)
    limits = GroupCommitLimits(
        chat.group_commit_max_batch, chat.group_commit_linger_s, chat.group_commit_max_inflight
    )
    service = ChatService(store, chat.max_members, limits, written=notifier)
    redis = redis_client(settings.redis.url)
    internal = internal_credential(settings)
    token = settings.chat.internal_token
    assert token is not None  # internal_credential() refused to go on without it
    send_limit = DirectSendLimit(
        SendLimiter(redis, settings.gateway.sends_per_s), token.get_secret_value()
    )
    servicer = ChatServicer(service, auth, internal, send_limit)
    server = grpc.aio.server()
    chat_pb2_grpc.add_ChatServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{settings.chat.grpc_host}:{settings.chat.grpc_port}"
    server.add_insecure_port(address)
    await server.start()

    async def ready() -> bool:
        return await schema_is_current(pool)

    ops = await start_ops_server(settings.ops_host, settings.chat.ops_port, ready)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info("chat service listening", grpc=address, ops_port=settings.chat.ops_port)
    try:
        await stop.wait()
    finally:
        log.info("chat service stopping")
        await health_servicer.enter_graceful_shutdown()
        await server.stop(grace=5)
        await service.drain()
        await notifier.close()
        await ops.cleanup()
        await redis.aclose()
        await pool.close()
