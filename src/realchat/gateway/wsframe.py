"""Server-to-client WebSocket frames as ready bytes (RFC 6455 section 5.2).

A fan-out event is framed once and the same bytes go to every recipient's socket: the header
depends only on the payload's length (frames from a server are never masked, and the gateway
never compresses: deflate costs ~50 KiB per connection).
"""

from __future__ import annotations

import struct

#: FIN + text opcode (RFC 6455 section 5.2): the gateway never fragments.
_TEXT = 0x81

_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")
_CODE = struct.Struct("!H")

#: A ping control frame with no payload (the keepalive; clients answer with a pong).
PING = b"\x89\x00"


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame carrying `payload` (UTF-8 JSON)."""
    size = len(payload)
    if size < 126:
        return _SHORT.pack(_TEXT, size) + payload
    if size < 65536:
        return _MEDIUM.pack(_TEXT, 126, size) + payload
    return _LONG.pack(_TEXT, 127, size) + payload


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A control frame (close 0x8, ping 0x9, pong 0xA); RFC 6455 bounds its payload to 125
    bytes, so a longer one is cut."""
    payload = payload[:125]
    return _SHORT.pack(0x80 | opcode, len(payload)) + payload


def close_frame(code: int, reason: str) -> bytes:
    """The close frame with a status code and a (cut to fit) UTF-8 reason."""
    reason_bytes = reason.encode()[:123].decode(errors="ignore").encode()
    return control_frame(0x8, _CODE.pack(code) + reason_bytes)
