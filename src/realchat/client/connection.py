"""The WebSocket under the client: connect, hand frames over, reconnect with backoff.

`Connection.run()` keeps one WebSocket open at a time to `/v1/ws?token=...` (the token taken
from a `TokenSource` at each attempt, so a renewed one is used) and drives a
`Handler` (the client's protocol logic) through each one: `opened` after the server's `hello`
(the handler runs its handshake there, while frames keep flowing to `received`), `received` for
every server frame in arrival order, `disconnected` when it ends.

Reconnects. After any end other than the ones below, the next attempt comes after a jittered,
exponentially growing delay (`Backoff`), reset once a connection completes its handshake:

- close 4001 (token refused), or HTTP 401 on the upgrade: with a renewable token, it is renewed
  and the next attempt follows (after the usual delay); a second refusal in a row (no handshake
  completed in between), or a token that cannot be renewed, is final: `run()` raises
  `Unauthorized`;
- `stop()`: no retry, `run()` returns.

Everything else (4008 slow consumer, 1001 going away, 1008/1009, network errors, a handshake
that did not complete in time, a server that closed without a code) reconnects.

Keepalive is aiohttp's heartbeat (WebSocket ping/pong control frames); nothing else is answered
automatically. Outgoing frames are paced (a token bucket, `max_frames_per_s`) to stay under the
server's per-connection frame limit, so a burst of re-sends after a reconnect is not a flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Protocol

import aiohttp
import msgspec
import structlog
from yarl import URL

from realchat.backoff import Backoff
from realchat.client.errors import Unauthorized
from realchat.client.events import Disconnected
from realchat.client.tokens import TokenSource
from realchat.contract.close_codes import CloseCode
from realchat.contract.frames import ClientFrame, HelloFrame, ServerFrame

log = structlog.get_logger(__name__)

_decoder = msgspec.json.Decoder(ServerFrame)
_encoder = msgspec.json.Encoder()


class LinkClosed(ConnectionError):  # noqa: N818 - a state, like ConnectionResetError
    """The WebSocket this frame was meant for is gone (a new one may already be up)."""


class Pacer:
    """A token bucket for outgoing frames: `rate` per second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp: float | None = None

    async def take(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._stamp is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        self._tokens -= 1
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self._rate)


class Link:
    """One open WebSocket: frames sent through it go out in call order, paced."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, pacer: Pacer, number: int) -> None:
        self._ws = ws
        self._pacer = pacer
        self._lock = asyncio.Lock()
        #: 1 for the client's first connection, 2 for the next...
        self.number = number
        self.closed = False

    async def send(self, frame: ClientFrame) -> None:
        """Write one frame; `LinkClosed` if this WebSocket is gone (before or while writing)."""
        data = _encoder.encode(frame)
        async with self._lock:
            if self.closed:
                raise LinkClosed("the connection is closed")
            await self._pacer.take()
            if self.closed or self._ws.closed:
                raise LinkClosed("the connection is closed")
            try:
                await self._ws.send_frame(data, aiohttp.WSMsgType.TEXT)
            except (ConnectionError, aiohttp.ClientError) as exc:
                raise LinkClosed(str(exc)) from exc


class Handler(Protocol):
    """The protocol logic a connection drives (implemented by the client's session)."""

    async def opened(self, link: Link, hello: HelloFrame) -> None:
        """A new WebSocket said hello: run the handshake (frames keep arriving meanwhile).
        Raising fails this connection: it is closed and a reconnect follows."""

    async def received(self, frame: ServerFrame) -> None:
        """One server frame, in arrival order. May wait (the reader pauses meanwhile)."""

    def disconnected(self, event: Disconnected) -> None:
        """A connection ended, or an attempt failed."""


class Connection:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        tokens: TokenSource,
        handler: Handler,
        *,
        backoff: Backoff,
        heartbeat_s: float = 20.0,
        connect_timeout_s: float = 10.0,
        max_frames_per_s: float = 40.0,
    ) -> None:
        self._http = http
        self._url = URL(url)
        self._tokens = tokens
        #: The token of the current attempt (kept out of logged reasons).
        self._secret = ""
        #: A refusal was answered with a renewed token and no handshake completed since.
        self._renewed_after_refusal = False
        self._handler = handler
        self._backoff = backoff
        self._heartbeat_s = heartbeat_s
        self._connect_timeout_s = connect_timeout_s
        self._pacer = Pacer(max_frames_per_s, max_frames_per_s)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stopping = asyncio.Event()
        self._fatal: Unauthorized | None = None
        self._failure: str | None = None
        #: Connection attempts made so far (successful or not).
        self.attempts = 0
        #: WebSockets opened so far (each one said hello).
        self.opened = 0

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def run(self) -> None:
        """Connect and reconnect until `stop()` (returns) or the token is refused for good
        (raises `Unauthorized`)."""
        while not self._stopping.is_set():
            self.attempts += 1
            try:
                code, reason = await self._attempt()
            except Unauthorized as exc:
                code = CloseCode.UNAUTHORIZED if exc.status is None else None
                if not await self._renew_after(exc):
                    self._handler.disconnected(Disconnected(code, str(exc), None))
                    raise
                reason = f"{exc}; token renewed"
            if self._secret:
                reason = reason.replace(self._secret, "<token>")
            if self._stopping.is_set():
                self._handler.disconnected(Disconnected(code, reason, None))
                return
            delay = self._backoff.next_delay()
            log.info("realchat connection lost", code=code, reason=reason, reconnect_in=delay)
            self._handler.disconnected(Disconnected(code, reason, delay))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # (3.11's wait_for can lose a cancel)
                    await self._stopping.wait()

    async def stop(self) -> None:
        """No more reconnects; close the current WebSocket (normal closure)."""
        self._stopping.set()
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()

    def abort(self) -> None:
        """Drop the current connection's TCP stream at once, without a close handshake, as a
        network failure would (the client then reconnects). For tests and network changes."""
        ws = self._ws
        if ws is None:
            return
        sock = ws.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    async def _renew_after(self, refusal: Unauthorized) -> bool:
        """Whether to try again after a refusal: once, with a renewed token. A provider that
        refuses the credentials is final too; one that fails otherwise is retried later."""
        if self._renewed_after_refusal or self._stopping.is_set() or not self._tokens.renewable:
            return False
        self._renewed_after_refusal = True
        try:
            return await self._tokens.renew_after_refusal(self._secret)
        except Unauthorized:
            return False
        except Exception as exc:  # still due: the next attempt asks again
            log.warning("realchat token renewal failed", error=repr(exc))
            return True

    # -- one connection ------------------------------------------------------------------------

    async def _attempt(self) -> tuple[int | None, str]:
        try:
            self._secret = await self._tokens.current()
        except Unauthorized:
            raise
        except Exception as exc:  # a failed attempt: backoff, then again
            return None, f"token renewal failed: {exc!r}"
        url = self._url.with_query(token=self._secret)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                ws = await self._http.ws_connect(
                    url, heartbeat=self._heartbeat_s, autoping=True, autoclose=True
                )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                raise Unauthorized("the WebSocket upgrade was refused", status=401) from None
            return None, f"WebSocket upgrade failed: HTTP {exc.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return None, f"connect failed: {exc!r}"
        if self._stopping.is_set():
            await ws.close()
            return ws.close_code, "stopped"
        self._ws = ws
        self._fatal = None
        self._failure = None
        try:
            return await self._serve(ws)
        finally:
            self._ws = None
            if not ws.closed:
                await ws.close()

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
        link: Link | None = None
        opener: asyncio.Task[None] | None = None
        reason = ""
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    frame = _decode(msg.data)
                    if isinstance(frame, HelloFrame) and link is None:
                        self.opened += 1
                        link = Link(ws, self._pacer, self.opened)
                        opener = asyncio.create_task(self._open(ws, link, frame))
                    elif frame is not None:
                        await self._handler.received(frame)
                elif msg.type is aiohttp.WSMsgType.CLOSE:
                    reason = str(msg.extra or "")
                elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    break
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    reason = f"connection error: {msg.data!r}"
                    break
                # BINARY frames are not part of the contract: ignored.
        finally:
            if link is not None:
                link.closed = True
            if opener is not None:
                if self._failure is None and self._fatal is None:
                    opener.cancel()  # still in its handshake: the connection is gone
                # else it is closing the WebSocket after a failed handshake: let it finish.
                with contextlib.suppress(asyncio.CancelledError):
                    await opener
        code = ws.close_code
        if code == CloseCode.UNAUTHORIZED:
            raise Unauthorized(f"the server closed the connection with 4001 ({reason})")
        if self._fatal is not None:
            raise self._fatal
        return code, self._failure or reason or "connection closed"

    async def _open(
        self, ws: aiohttp.ClientWebSocketResponse, link: Link, hello: HelloFrame
    ) -> None:
        try:
            await self._handler.opened(link, hello)
        except Unauthorized as exc:
            self._fatal = exc
        except Exception as exc:  # any failure fails this connection (and reconnects)
            self._failure = f"handshake failed: {exc!r}"
        else:
            self._backoff.reset()
            self._renewed_after_refusal = False
            return
        await ws.close(message=b"handshake failed")


def _decode(data: str | bytes) -> ServerFrame | None:
    """A server frame; None for what this SDK does not know (newer frame types are allowed by
    the contract) or cannot read."""
    try:
        frame: ServerFrame = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        log.debug("realchat frame ignored", error=str(exc))
        return None
    return frame
