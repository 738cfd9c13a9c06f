"""`GET /v1/ws`: one WebSocket session, from token check to close.

Frames from the client are handled in order on the session's read loop (so one client's sends
get seqs in the order it sent them); a sync runs as a task of its own so sends and acks are not
held up by a long backfill. Bad frames get an error frame and the connection stays open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from aiohttp import WSMsgType, web
from aiohttp.base_protocol import BaseProtocol
from opentelemetry.trace import SpanKind

from realchat.auth.tokens import InvalidToken
from realchat.config import GatewaySettings
from realchat.contract.close_codes import CloseCode
from realchat.contract.frames import (
    AckFrame,
    BadFrame,
    ClientFrame,
    ErrorFrame,
    HelloFrame,
    PingFrame,
    PongFrame,
    SendFrame,
    SendOkFrame,
    SyncFrame,
    TypingFrame,
    decode_client_frame,
    encode,
)
from realchat.forwarded import Network, client_address
from realchat.gateway import metrics
from realchat.gateway.admission import ConnectionLimits
from realchat.gateway.chat_client import ChatCallError, ChatClient
from realchat.gateway.connection import Connection
from realchat.gateway.hub import Hub
from realchat.gateway.live import LiveStatus
from realchat.gateway.presence import PresenceHeartbeat
from realchat.gateway.ratelimit import SendLimiter, TokenBucket
from realchat.gateway.rest import error_response
from realchat.gateway.sessions import SessionGuard
from realchat.gateway.socket_sink import SocketSink
from realchat.gateway.sync import Backfiller
from realchat.gateway.typing import TypingRelay
from realchat.observability.tracing import tracer
from realchat.presence.registry import DEVICE_PATTERN

log = structlog.get_logger(__name__)

_PONG = encode(PongFrame())


class WebSocketSink(SocketSink):
    """An aiohttp WebSocket's socket as a connection's frame sink.

    aiohttp keeps the handshake, the reading and the control frames it sends itself (pongs,
    the close); the data frames and pings the gateway sends are whole, ready frames written
    straight to the transport, between aiohttp's writes and never inside one."""

    __slots__ = ("_ws",)

    def __init__(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport, protocol: BaseProtocol
    ) -> None:
        super().__init__(transport, protocol)
        self._ws = ws

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code=code, message=reason.encode())


_REASONS: dict[int, str] = {
    CloseCode.UNAUTHORIZED: "unauthorized",
    CloseCode.SLOW_CONSUMER: "slow_consumer",
    CloseCode.POLICY: "policy",
    CloseCode.TOO_BIG: "too_big",
    CloseCode.GOING_AWAY: "going_away",
    CloseCode.IDLE_TIMEOUT: "idle_timeout",
}


_ENDED = (WSMsgType.ERROR, WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)


def disconnect_reason(
    connection: Connection, ws: web.WebSocketResponse, ended_by: BaseException | None
) -> str:
    """Why a session ended, as a bounded label: who closed it, with which code."""
    code = connection.close_code if connection.close_code is not None else ws.close_code
    if code is not None and code in _REASONS:
        return _REASONS[code]
    if ended_by is not None and not isinstance(ended_by, asyncio.CancelledError):
        return "error"
    return "client_closed"


@dataclass
class Session:
    """Everything one WebSocket session needs, assembled once per gateway."""

    hub: Hub
    chat: ChatClient
    #: Checks tokens at the door and closes sessions whose token expires or is revoked.
    guard: SessionGuard
    backfiller: Backfiller
    send_limiter: SendLimiter
    presence: PresenceHeartbeat
    settings: GatewaySettings
    #: Whether live delivery has its start positions; sessions are refused (503) until then.
    delivering: Callable[[], bool]
    accepting: bool = True
    #: Tells a connection opened while live delivery is paused (the bus is away).
    live: LiveStatus | None = None
    #: Refused sends logged per second, for the whole gateway (each is counted in
    #: realchat_gateway_bad_frames_total): clients cannot flood the log.
    refusal_logs: TokenBucket = field(default_factory=lambda: TokenBucket(rate=20, burst=100))
    #: Connections per user and per client address (`admission.py`); unlimited if not given.
    limits: ConnectionLimits = field(default_factory=lambda: ConnectionLimits(2**31, 2**31))
    #: Peers whose `X-Forwarded-For` names the client (the balancer).
    trusted_proxies: tuple[Network, ...] = ()
    #: Relays typing frames; without it they are refused (`typing_unavailable`).
    typing: TypingRelay | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        s = self.settings
        device = request.query.get("device")
        if device is not None and not DEVICE_PATTERN.fullmatch(device):
            return error_response(
                400, "invalid_device", "device: 1-64 characters of A-Z a-z 0-9 _ . -"
            )
        address = self.limits.counted_address(
            client_address(
                request.remote, request.headers.get("X-Forwarded-For", ""), self.trusted_proxies
            )
        )
        if self.limits.address_full(address):
            metrics.DISCONNECTS.labels(reason="too_many_connections").inc()
            return error_response(
                429, "too_many_connections", "too many connections from this address"
            )
        ws = web.WebSocketResponse(
            compress=False,  # deflate costs ~50 KiB per connection
            # aiohttp refuses a frame of exactly max_msg_size; the limit is "above max_frame_bytes".
            max_msg_size=s.max_frame_bytes + 1,
            # No aiohttp heartbeat: its missing pong drops the TCP connection with no close frame
            # (1006). The hub pings every connection; an idle one is closed with 4002 instead.
            writer_limit=64 * 1024,
            decode_text=False,
            autoping=False,  # pings and pongs come to the read loop: they count as traffic
        )
        if not ws.can_prepare(request).ok:
            # Else aiohttp answers a plain GET with a text/plain 400.
            return error_response(
                400, "websocket_upgrade_required", "GET /v1/ws takes a WebSocket upgrade only"
            )
        if not self.delivering():
            return error_response(
                503, "gateway_unavailable", "the gateway is starting; try again shortly"
            )
        await ws.prepare(request)
        transport = request.transport
        if transport is None:  # the client is gone already
            return ws
        try:
            claims = await self.guard.admit(request.query.get("token", ""))
        except InvalidToken:
            metrics.DISCONNECTS.labels(reason="unauthorized").inc()
            await ws.close(code=CloseCode.UNAUTHORIZED, message=b"unauthorized")
            return ws
        if not self.accepting:
            await ws.close(code=CloseCode.GOING_AWAY, message=b"draining")
            return ws
        if self.limits.user_full(claims.user_id):
            metrics.DISCONNECTS.labels(reason="too_many_connections").inc()
            await ws.close(code=CloseCode.POLICY, message=b"too many connections")
            return ws
        user_id = claims.user_id
        connection = Connection(
            user_id,
            WebSocketSink(ws, transport, request.protocol),
            queue_size=s.send_queue_size,
            queue_bytes=s.send_queue_bytes,
            close_grace_s=s.close_grace_s,
            on_gap=self.backfiller.start,
            backfill_stall_s=s.backfill_stall_s,
            sync_grace_s=s.sync_grace_s,
            flusher=self.hub.flusher,
        )
        self.hub.register(connection)
        self.guard.track(connection, claims)
        self.limits.opened(user_id, address)
        metrics.ACTIVE_CONNECTIONS.inc()
        connection.push(encode(HelloFrame(str(user_id), str(connection.session_id), s.heartbeat_s)))
        if self.live is not None and (paused := self.live.greeting()) is not None:
            connection.push_frame(paused)
        # Without a device id every connection counts as a device of its own.
        self.presence.connected(
            connection.session_id, user_id, device or str(connection.session_id)
        )
        ended_by: BaseException | None = None
        try:
            await self._read_loop(ws, connection)
        except BaseException as exc:
            ended_by = exc
            raise
        finally:
            metrics.DISCONNECTS.labels(reason=disconnect_reason(connection, ws, ended_by)).inc()
            self.presence.disconnected(connection.session_id)
            self.guard.untrack(connection)
            self.limits.closed(user_id, address)
            self.hub.unregister(connection)
            metrics.ACTIVE_CONNECTIONS.dec()
            await connection.finish()
        return ws

    async def _read_loop(self, ws: web.WebSocketResponse, connection: Connection) -> None:
        flood = TokenBucket(
            rate=self.settings.max_frames_per_s, burst=self.settings.max_frames_per_s
        )
        strikes = 0
        while connection.is_open:
            # No timeout per receive (a timer per connection): the hub's idle sweep closes a
            # connection nothing arrived from; pings and pongs count as traffic.
            msg = await ws.receive()
            connection.last_heard = time.monotonic()
            if msg.type in _ENDED or not connection.is_open:
                break
            if msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
                continue
            if msg.type is WSMsgType.PONG:
                continue
            if not flood.take():
                strikes += 1
                if strikes > self.settings.max_frames_per_s:
                    # Leave the reading to the close: aiohttp's close reads (and drops) the rest
                    # of the flood until the client's close frame only when nobody else reads.
                    connection.close(CloseCode.POLICY, "too many frames")
                    break
                self._refuse(connection, BadFrame("rate_limited", "too many frames; slow down"))
                continue
            strikes = 0
            if msg.type is not WSMsgType.TEXT:
                self._refuse(connection, BadFrame("invalid_frame", "only text frames are accepted"))
                continue
            try:
                frame = decode_client_frame(msg.data)
            except BadFrame as bad:
                self._refuse(connection, bad)
                continue
            await self._dispatch(connection, frame)
        if ws.close_code == CloseCode.TOO_BIG:
            metrics.BAD_FRAMES.labels(code="too_big").inc()

    async def _dispatch(self, connection: Connection, frame: ClientFrame) -> None:
        match frame:
            case PingFrame():
                connection.push(_PONG)
            case SendFrame():
                await self._send(connection, frame)
            case AckFrame():
                await self._ack(connection, frame)
            case SyncFrame():
                connection.spawn(self._sync(connection, frame))
            case TypingFrame():
                await self._typing(connection, frame)

    def _refuse(
        self, connection: Connection, bad: BadFrame, client_msg_id: str | None = None
    ) -> None:
        metrics.BAD_FRAMES.labels(code=bad.code).inc()
        connection.push(encode(ErrorFrame(bad.code, bad.message, client_msg_id)))

    async def _send(self, connection: Connection, frame: SendFrame) -> None:
        with tracer().start_as_current_span(
            "ws send",
            kind=SpanKind.SERVER,
            attributes={
                "realchat.user_id": str(connection.user_id),
                "realchat.conversation_id": frame.conversation_id,
            },
        ) as span:
            refusal = await self._try_send(connection, frame)
            if refusal is not None:
                span.set_attribute("realchat.error_code", refusal.code)
                if self.refusal_logs.take():  # every refusal is counted; some are logged
                    log.info(
                        "send refused",
                        user_id=str(connection.user_id),
                        conversation_id=frame.conversation_id,
                        client_msg_id=frame.client_msg_id,
                        error_code=refusal.code,
                    )
                self._refuse(connection, refusal, frame.client_msg_id)

    async def _try_send(self, connection: Connection, frame: SendFrame) -> BadFrame | None:
        if not await self.send_limiter.allow(connection.user_id):
            return BadFrame("rate_limited", "too many messages; slow down")
        try:
            sent = await self.chat.send(
                connection.user_id, frame.conversation_id, frame.client_msg_id, frame.content
            )
        except ChatCallError as error:
            return BadFrame(error.code, error.message)
        connection.push(encode(SendOkFrame(frame.client_msg_id, sent.message)))
        connection.note_own_send(sent.message.conversation_id, sent.message.seq)
        return None

    async def _typing(self, connection: Connection, frame: TypingFrame) -> None:
        if self.typing is None:
            self._refuse(connection, BadFrame("typing_unavailable", "typing is not relayed here"))
            return
        refusal = await self.typing.typing(connection, frame)
        if refusal is not None:
            self._refuse(connection, refusal)

    async def _ack(self, connection: Connection, frame: AckFrame) -> None:
        try:
            await self.chat.ack(connection.user_id, frame.conversation_id, frame.seq)
        except ChatCallError as error:
            self._refuse(connection, BadFrame(error.code, error.message))

    async def _sync(self, connection: Connection, frame: SyncFrame) -> None:
        async with connection.sync_lock:
            try:
                await self._sync_positions(connection, frame)
            finally:
                # Handled, even if it failed: live delivery starts (the backfiller starts it
                # as soon as every backfill has begun; this covers the ways out before that).
                connection.start_live()

    async def _sync_positions(self, connection: Connection, frame: SyncFrame) -> None:
        try:
            listed = await self.chat.conversations(connection.user_id)
        except ChatCallError as error:
            self._refuse(connection, BadFrame(error.code, error.message))
            return
        mine = {c.conversation_id: c.acked_seq for c in listed}
        # Read before anything is sent: a change after this reaches the client live.
        counters = {c.conversation_id: c.last_change for c in listed}
        positions = mine if not frame.positions else {}
        for conversation_id, seq in (frame.positions or {}).items():
            if conversation_id not in mine:
                self._refuse(
                    connection,
                    BadFrame("not_a_member", f"not a member of conversation {conversation_id}"),
                )
            elif seq < 0:
                self._refuse(connection, BadFrame("invalid_seq", "positions must be >= 0"))
            else:
                positions[conversation_id] = seq
        try:
            await self.backfiller.sync(connection, positions, frame.changes, counters)
        except ChatCallError as error:
            self._refuse(connection, BadFrame("sync_failed", error.message))

    def drain(self) -> None:
        """Stop accepting sessions and tell every client to reconnect elsewhere (1001)."""
        self.accepting = False
        for connection in list(self.hub.all_connections()):
            connection.close(CloseCode.GOING_AWAY, "server going away")
