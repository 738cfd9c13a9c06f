"""One gateway instance: the public entrypoint (REST + WebSocket), its Kafka delivery, and its
ops endpoint. Stateless: any number of them can serve the same users behind a balancer."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import aiohttp
import grpc
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from realchat.auth.revocation import TokenVersions
from realchat.auth.tokens import load_verifier
from realchat.config import GatewaySettings, Settings
from realchat.contract.limits import MAX_BODY_BYTES
from realchat.filelimit import raise_file_limit
from realchat.forwarded import trusted_networks
from realchat.gateway import metrics
from realchat.gateway.admission import ConnectionLimits
from realchat.gateway.chat_client import ChatClient
from realchat.gateway.delivery import EventDispatcher, KafkaDelivery, consumer_config, group_id
from realchat.gateway.hub import Hub
from realchat.gateway.live import LiveStatus
from realchat.gateway.presence import PresenceHeartbeat
from realchat.gateway.ratelimit import SendLimiter
from realchat.gateway.rest import RestApi, errors_as_json, observed
from realchat.gateway.sessions import SessionGuard
from realchat.gateway.sync import Backfiller
from realchat.gateway.typing import ConversationMembers, TypingRelay
from realchat.gateway.webapp import add_webapp_routes
from realchat.gateway.websocket import Session
from realchat.observability.ops import start_ops_server
from realchat.presence.registry import PresenceRegistry
from realchat.storage.redis import redis_client

log = structlog.get_logger(__name__)

#: The largest reply the gateway takes from the chat service.
MAX_CHAT_REPLY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class _Gateway:
    """The parts of one gateway instance that its start and its drain both handle."""

    hub: Hub
    guard: SessionGuard
    limiter: SendLimiter
    presence: PresenceHeartbeat
    typing: TypingRelay
    delivery: KafkaDelivery
    live: LiveStatus
    session: Session


@dataclass
class _Background:
    """The gateway's long-running tasks; the presence heartbeat stops by its event (its last
    flush must run), the others are cancelled."""

    heartbeat_stop: asyncio.Event
    heartbeat: asyncio.Task[None]
    cancellable: list[asyncio.Task[None]]


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    token = settings.chat.internal_token
    if token is None:
        raise RuntimeError("REALCHAT_CHAT__INTERNAL_TOKEN is not set")
    g = settings.gateway
    # Every WebSocket is a descriptor: the connections a gateway can hold are its file limit.
    files = raise_file_limit()
    channel = _chat_channel(settings)
    chat = ChatClient(channel, token.get_secret_value())
    redis = redis_client(settings.redis.url)
    gateway = _assemble(settings, chat, redis)
    # Requests to the auth service: no pool limit, or a flood of sign-ups would hold every
    # pooled connection and a login would wait behind them here; the auth service sheds load
    # itself (its hashing queue answers 503 when full), and the balancer bounds connections.
    http = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10), connector=aiohttp.TCPConnector(limit=0)
    )
    runner = await _app_runner(settings, gateway, chat, http)
    gateway.delivery.start()
    background = _start_background(gateway, g)
    session, delivery = gateway.session, gateway.delivery

    async def ready() -> bool:
        # Not `delivery.assigned`: a gateway whose consumer lost the bus still serves sends,
        # history and syncs (live.py); only before its first positions, or with a dead
        # consumer thread, is it no use to a client.
        return session.accepting and delivery.positioned and delivery.failure is None

    ops = await start_ops_server(settings.ops_host, g.ops_port, ready)
    await delivery.wait_assigned(timeout_s=30)
    site = web.TCPSite(runner, settings.http.host, settings.http.port, backlog=g.accept_backlog)
    await site.start()
    log.info(
        "gateway listening",
        address=f"{settings.http.host}:{settings.http.port}",
        instance=g.instance_id,
        shards=g.shards,
        file_limit=files,
    )
    try:
        await stop.wait()
    finally:
        await _drain(gateway, background, site, runner, g)
        # Local clients only, quick either way; closed even after the deadline, so the exit
        # does not wait on their teardown at interpreter exit.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await ops.cleanup()
                await http.close()
                await redis.aclose()
                await channel.close()
        log.info("gateway stopped")


def _chat_channel(settings: Settings) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        f"{settings.chat.grpc_host}:{settings.chat.grpc_port}",
        # A history page can be 500 messages of 4000 four-byte characters (~8 MB): above gRPC's
        # default 4 MiB, such a page failed every sync and history read of its conversation.
        options=[
            ("grpc.max_receive_message_length", MAX_CHAT_REPLY_BYTES),
            # Back within 2 s of the chat service's return: gRPC's default reconnect backoff
            # grows to 120 s, and after a 20 s outage the gateway stayed cut off for seconds
            # more (found by `realchat chaos`).
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ],
    )


def _assemble(settings: Settings, chat: ChatClient, redis: aioredis.Redis) -> _Gateway:
    g = settings.gateway
    hub = Hub(g.shards)
    guard = SessionGuard(load_verifier(settings.auth), TokenVersions(redis))
    presence = PresenceHeartbeat(
        PresenceRegistry(redis, settings.presence.key_ttl_s), settings.presence.heartbeat_s
    )
    typing = TypingRelay(redis, hub, ConversationMembers(chat.member_ids))
    metrics.REGISTRY_USERS.set_function(lambda: hub.users)
    metrics.PRESENCE_DEVICES.set_function(lambda: len(presence))
    delivery = KafkaDelivery(
        consumer_config(
            settings.kafka.bootstrap_servers,
            group_id(g.instance_id),
            queued_max_kbytes=g.kafka_queued_max_kbytes,
            fetch_max_bytes=g.kafka_fetch_max_bytes,
        ),
        EventDispatcher(hub, typing.forget_members),
        fresh_start_at_end=True,
    )
    live = LiveStatus(hub, lambda: delivery.assigned)
    limiter = SendLimiter(redis, g.sends_per_s)
    session = Session(
        hub=hub,
        chat=chat,
        guard=guard,
        backfiller=Backfiller(
            chat,
            g.sync_page_size,
            changes=chat,
            max_concurrent=g.max_concurrent_backfills,
            max_concurrent_per_user=g.max_concurrent_backfills_per_user,
        ),
        send_limiter=limiter,
        presence=presence,
        settings=g,
        delivering=lambda: delivery.positioned,
        live=live,
        limits=ConnectionLimits(
            g.max_connections_per_user,
            g.max_connections_per_address,
            trusted_networks(g.unlimited_addresses),
        ),
        trusted_proxies=trusted_networks(g.trusted_proxies),
        typing=typing,
    )
    return _Gateway(hub, guard, limiter, presence, typing, delivery, live, session)


async def _app_runner(
    settings: Settings, gateway: _Gateway, chat: ChatClient, http: aiohttp.ClientSession
) -> web.AppRunner:
    """REST, the WebSocket endpoint and the web client, set up but not yet listening."""
    app = web.Application(middlewares=[observed, errors_as_json], client_max_size=MAX_BODY_BYTES)
    trusted = trusted_networks(settings.gateway.trusted_proxies)
    rest_api = RestApi(chat, gateway.guard, gateway.limiter, settings.auth.url, http, trusted)
    app.router.add_routes(rest_api.routes())
    app.router.add_get("/v1/ws", gateway.session.handle)
    add_webapp_routes(app)
    # WebSocket sessions are not aiohttp's (handshake.py): the drain below closes them; what the
    # runner still has when it stops (HTTP requests) gets one close grace.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.gateway.close_grace_s)
    await runner.setup()
    return runner


def _start_background(gateway: _Gateway, g: GatewaySettings) -> _Background:
    heartbeat_stop = asyncio.Event()
    heartbeat = asyncio.create_task(gateway.presence.run(heartbeat_stop), name="presence-heartbeat")
    hub = gateway.hub
    cancellable = [
        asyncio.create_task(hub.ping_forever(g.heartbeat_s), name="websocket-pings"),
        asyncio.create_task(gateway.live.run(), name="live-status"),
        asyncio.create_task(gateway.typing.run(), name="typing-relay"),
        asyncio.create_task(hub.close_idle_forever(g.idle_timeout_s), name="idle-sweep"),
        asyncio.create_task(gateway.guard.run(), name="session-guard"),
    ]
    return _Background(heartbeat_stop, heartbeat, cancellable)


async def _drain(
    gateway: _Gateway,
    background: _Background,
    site: web.TCPSite,
    runner: web.AppRunner,
    g: GatewaySettings,
) -> None:
    """Close the sessions, stop listening and consuming, all within `drain_timeout_s`."""
    hub = gateway.hub
    log.info("gateway draining", connections=len(hub), timeout_s=g.drain_timeout_s)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + g.drain_timeout_s
    try:
        async with asyncio.timeout_at(deadline):
            gateway.session.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_until_empty(hub), timeout=g.drain_timeout_s / 2)
            await site.stop()
            for task in background.cancellable:
                task.cancel()
            background.heartbeat_stop.set()
            # Its last flush: the drained clients' disconnects reach Redis.
            await background.heartbeat
            # Commit and leave, with what is left of the deadline (minus a moment for the
            # rest): a broker that does not answer cannot hold the exit up. Then the group
            # goes: no later process uses it.
            if await gateway.delivery.stop(timeout_s=max(0.1, deadline - loop.time() - 0.5)):
                await gateway.delivery.delete_group()
            # Sessions still closing (a client that does not answer its close frame) get
            # until the deadline; their sockets are the gateway's, not aiohttp's.
            await _until_empty(hub)
            await runner.cleanup()
    except TimeoutError:
        log.warning("drain deadline passed; exiting with work left", timeout_s=g.drain_timeout_s)


async def _until_empty(hub: Hub) -> None:
    while len(hub):  # noqa: ASYNC110 - connections leave from their own handlers
        await asyncio.sleep(0.05)
