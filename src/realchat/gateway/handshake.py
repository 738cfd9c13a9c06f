"""The WebSocket upgrade of `GET /v1/ws`: aiohttp parses and routes the request (same port,
middlewares and error bodies as the REST API); the gateway answers `101` itself and takes the
socket away from aiohttp's HTTP protocol, which then forgets the connection.

Why: an idle WebSocket served by aiohttp keeps its HTTP protocol, parser, request, response,
reader, writer and the handler's task with its coroutine frames for the connection's whole life,
~14 KiB per connection; the socket taken over costs ~1.5 KiB plus what the gateway itself keeps
(docs/benchmarks.md, "Idle connections"). This module is the only one that touches aiohttp's
private attributes (pinned version, covered by the tests of the upgrade).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

from aiohttp import web

#: RFC 6455 section 1.3.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """`Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def switching_protocols(key: str) -> bytes:
    """The 101 answer: no subprotocol and no extension (never deflate: ~50 KiB a connection)."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
    ).encode()


def take_over(request: web.Request, protocol: asyncio.Protocol) -> bool:
    """Answer a checked upgrade request (`WebSocketResponse.can_prepare` said ok) with 101 and
    hand its socket to `protocol`; False if the client is gone already.

    The handler must return right after (its response is never written: aiohttp finds no
    socket). Bytes the client sent behind its request (it should wait for the 101, but may
    not) go to `protocol` first."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return False
    http = request.protocol
    transport.write(switching_protocols(request.headers["Sec-WebSocket-Key"]))
    early: bytes = http._message_tail
    http._message_tail = b""
    transport.set_protocol(protocol)
    # aiohttp must neither write to nor close the socket it no longer owns, and must drop its
    # state for it (its server's registry of connections, keep-alive timer, parser).
    http.transport = None
    http.connection_lost(None)
    protocol.connection_made(transport)
    if early:
        protocol.data_received(early)
    return True


def taken() -> web.StreamResponse:
    """What a handler returns once the socket is taken over (aiohttp cannot write it)."""
    return web.Response(status=101)
