"""`GET /v1/ws`: one WebSocket session, from token check to close.

aiohttp routes the upgrade request and answers its refusals (JSON errors); the gateway then takes
the socket over (`handshake.py`) and reads it itself (`wssocket.py`): an idle session holds no
task and none of aiohttp's per-request objects. Messages from the client are handled one at a
time, in the order they came (so one client's sends get seqs in the order it sent them); a sync
runs as a task of its own so sends and acks are not held up by a long backfill. Bad frames get an
error frame and the connection stays open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from aiohttp import web
from opentelemetry.trace import SpanKind

from realchat.auth.tokens import InvalidToken
from realchat.config import GatewaySettings
from realchat.contract.close_codes import CloseCode
from realchat.contract.error_codes import ErrorCode
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
from realchat.gateway.handshake import take_over, taken
from realchat.gateway.hub import Hub
from realchat.gateway.live import LiveStatus
from realchat.gateway.presence import PresenceHeartbeat
from realchat.gateway.ratelimit import SendLimiter, TokenBucket
from realchat.gateway.sessions import SessionGuard
from realchat.gateway.socket_sink import SocketSink
from realchat.gateway.sync import Backfiller
from realchat.gateway.typing import TypingRelay
from realchat.gateway.wsreader import MESSAGE_TOO_BIG, FrameError, Opcode, Received
from realchat.gateway.wssocket import WebSocket
from realchat.http import error_response
from realchat.observability.tracing import span
from realchat.presence.registry import DEVICE_PATTERN

log = structlog.get_logger(__name__)

_PONG = encode(PongFrame())


class WebSocketSink(SocketSink):
    """A session's socket as its connection's frame sink: data frames and pings are whole, ready
    frames written straight to the transport; closing sends the close frame and waits for the
    client's."""

    __slots__ = ("_socket",)

    def __init__(self, socket: WebSocket, transport: asyncio.Transport) -> None:
        super().__init__(transport, socket)
        self._socket = socket

    async def close(self, code: int, reason: str) -> None:
        await self._socket.close(code, reason)


_REASONS: dict[int, str] = {
    CloseCode.SLOW_CONSUMER: "slow_consumer",
    CloseCode.POLICY: "policy",
    CloseCode.TOO_BIG: "too_big",
    CloseCode.GOING_AWAY: "going_away",
    CloseCode.IDLE_TIMEOUT: "idle_timeout",
}


def disconnect_reason(connection: Connection, peer_close_code: int | None) -> str:
    """Why a session ended, as a bounded label: who closed it, with which code."""
    code = connection.close_code if connection.close_code is not None else peer_close_code
    if code is not None and code in _REASONS:
        return _REASONS[code]
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
    #: Ended sessions whose connection is still finishing (its close, its tasks).
    _finishing: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        s = self.settings
        device = request.query.get("device")
        if device is not None and not DEVICE_PATTERN.fullmatch(device):
            return error_response(
                400, ErrorCode.INVALID_DEVICE, "device: 1-64 characters of A-Z a-z 0-9 _ . -"
            )
        address = self.limits.counted_address(
            client_address(
                request.remote, request.headers.get("X-Forwarded-For", ""), self.trusted_proxies
            )
        )
        if self.limits.address_full(address):
            metrics.DISCONNECTS.labels(reason=ErrorCode.TOO_MANY_CONNECTIONS).inc()
            return error_response(
                429, ErrorCode.TOO_MANY_CONNECTIONS, "too many connections from this address"
            )
        if not web.WebSocketResponse().can_prepare(request).ok:
            # Else aiohttp answers a plain GET with a text/plain 400.
            return error_response(
                400,
                ErrorCode.WEBSOCKET_UPGRADE_REQUIRED,
                "GET /v1/ws takes a WebSocket upgrade only",
            )
        if not self.delivering():
            return error_response(
                503, ErrorCode.GATEWAY_UNAVAILABLE, "the gateway is starting; try again shortly"
            )
        # No compression (deflate costs ~50 KiB per connection); no timer per connection: the
        # hub pings every connection and closes (4002) the ones nothing came from.
        socket = WebSocket(asyncio.get_running_loop(), self, s.max_frame_bytes)
        socket.address = address
        if not take_over(request, socket):  # the client is gone already
            return taken()
        try:
            await self._open(socket, request.query.get("token", ""), device)
        except Exception:  # a bug here must not leave the taken socket to nobody
            log.exception("opening a session failed")
            socket.abort()
        return taken()

    async def _open(self, socket: WebSocket, token: str, device: str | None) -> None:
        """Authenticate the client on its upgraded socket and register its connection."""
        s = self.settings
        try:
            claims = await self.guard.admit(token)
        except InvalidToken:
            metrics.DISCONNECTS.labels(reason=ErrorCode.UNAUTHORIZED).inc()
            await self._refuse_session(socket, CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED)
            return
        if not self.accepting:
            await self._refuse_session(socket, CloseCode.GOING_AWAY, "draining")
            return
        if self.limits.user_full(claims.user_id):
            metrics.DISCONNECTS.labels(reason=ErrorCode.TOO_MANY_CONNECTIONS).inc()
            await self._refuse_session(socket, CloseCode.POLICY, "too many connections")
            return
        user_id = claims.user_id
        transport = socket.transport
        if transport is None:
            return
        connection = Connection(
            user_id,
            WebSocketSink(socket, transport),
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
        self.limits.opened(user_id, socket.address)
        metrics.ACTIVE_CONNECTIONS.inc()
        connection.push(encode(HelloFrame(str(user_id), str(connection.session_id), s.heartbeat_s)))
        if self.live is not None and (paused := self.live.greeting()) is not None:
            connection.push_frame(paused)
        # Without a device id every connection counts as a device of its own.
        self.presence.connected(
            connection.session_id, user_id, device or str(connection.session_id)
        )
        socket.attach(connection)

    async def _refuse_session(self, socket: WebSocket, code: int, reason: str) -> None:
        """Close a session that is not opened, within the close grace."""
        try:
            await asyncio.wait_for(socket.close(code, reason), self.settings.close_grace_s)
        except (TimeoutError, ConnectionError):
            socket.abort()

    def on_lost(self, socket: WebSocket) -> None:
        connection = socket.connection
        if connection is None:
            return
        socket.connection = None
        reason = disconnect_reason(connection, socket.peer_close_code)
        metrics.DISCONNECTS.labels(reason=reason).inc()
        self.presence.disconnected(connection.session_id)
        self.guard.untrack(connection)
        self.limits.closed(connection.user_id, socket.address)
        self.hub.unregister(connection)
        metrics.ACTIVE_CONNECTIONS.dec()
        finishing = asyncio.get_running_loop().create_task(connection.finish())
        self._finishing.add(finishing)
        finishing.add_done_callback(self._finishing.discard)

    def on_violation(self, socket: WebSocket, violation: FrameError) -> None:
        connection = socket.connection
        if violation.code == MESSAGE_TOO_BIG:
            metrics.BAD_FRAMES.labels(code="too_big").inc()
        if connection is None:
            socket.abort()
        else:
            connection.close(violation.code, violation.reason)

    async def on_message(self, socket: WebSocket, received: Received) -> None:
        connection = socket.connection
        if connection is None:
            return
        flood = socket.flood
        if flood is None:
            rate = self.settings.max_frames_per_s
            flood = socket.flood = TokenBucket(rate=rate, burst=rate)
        if not flood.take():
            socket.strikes += 1
            if socket.strikes > self.settings.max_frames_per_s:
                connection.close(CloseCode.POLICY, "too many frames")
                return
            self._refuse(connection, BadFrame(ErrorCode.RATE_LIMITED, "too many frames; slow down"))
            return
        socket.strikes = 0
        if received.opcode is not Opcode.TEXT:
            self._refuse(
                connection, BadFrame(ErrorCode.INVALID_FRAME, "only text frames are accepted")
            )
            return
        try:
            frame = decode_client_frame(received.payload)
        except BadFrame as bad:
            self._refuse(connection, bad)
            return
        await self._dispatch(connection, frame)

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
        with span(
            "ws send",
            kind=SpanKind.SERVER,
            attributes={
                "realchat.user_id": str(connection.user_id),
                "realchat.conversation_id": frame.conversation_id,
            },
        ) as send_span:
            refusal = await self._try_send(connection, frame)
            if refusal is not None:
                send_span.set_attribute("realchat.error_code", refusal.code)
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
            return BadFrame(ErrorCode.RATE_LIMITED, "too many messages; slow down")
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
            self._refuse(
                connection, BadFrame(ErrorCode.TYPING_UNAVAILABLE, "typing is not relayed here")
            )
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
            listed = await self.chat.positions(connection.user_id)
        except ChatCallError as error:
            self._refuse(connection, BadFrame(error.code, error.message))
            return
        mine = {c.conversation_id: c.acked_seq for c in listed}
        # Read before anything is sent: a message or change after this reaches the client live.
        counters = {c.conversation_id: c.last_change for c in listed}
        last_seqs = {c.conversation_id: c.last_seq for c in listed}
        positions = mine if not frame.positions else {}
        for conversation_id, seq in (frame.positions or {}).items():
            if conversation_id not in mine:
                self._refuse(
                    connection,
                    BadFrame(
                        ErrorCode.NOT_A_MEMBER, f"not a member of conversation {conversation_id}"
                    ),
                )
            elif seq < 0:
                self._refuse(connection, BadFrame(ErrorCode.INVALID_SEQ, "positions must be >= 0"))
            else:
                positions[conversation_id] = seq
        try:
            await self.backfiller.sync(connection, positions, frame.changes, counters, last_seqs)
        except ChatCallError as error:
            self._refuse(connection, BadFrame(ErrorCode.SYNC_FAILED, error.message))

    def drain(self) -> None:
        """Stop accepting sessions and tell every client to reconnect elsewhere (1001)."""
        self.accepting = False
        for connection in list(self.hub.all_connections()):
            connection.close(CloseCode.GOING_AWAY, "server going away")
