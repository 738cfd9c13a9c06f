"""Client-to-server WebSocket frames, parsed Sans-I/O (RFC 6455 section 5): bytes in, whole
messages and control frames out.

The gateway reads its WebSockets itself (see `wssocket.py` for why): this is the part that knows
the wire format, kept free of sockets so every edge case is a unit test. No extension is ever
negotiated, so any RSV bit is an error; a client's frames must be masked; fragments are joined
into one message, bounded by `max_message_bytes` as they arrive (a client cannot make the gateway
buffer more than the limit before it is refused).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

#: RFC 6455 section 7.4.1: a frame that breaks the protocol.
PROTOCOL_ERROR = 1002
#: RFC 6455 section 7.4.1: a message above the size limit (the contract's TOO_BIG).
MESSAGE_TOO_BIG = 1009

_MEDIUM = struct.Struct("!H")
_LONG = struct.Struct("!Q")


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


@dataclass(frozen=True, slots=True)
class Received:
    """A whole data message (TEXT, BINARY: fragments joined) or one control frame."""

    opcode: Opcode
    payload: bytes


class FrameError(Exception):
    """The client broke the protocol or the size limit: close the connection with `code`."""

    def __init__(self, code: int, reason: str, resume_at: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        #: Where reading can go on (after a too-big frame, to find the client's close frame);
        #: None: the stream cannot be read any further.
        self.resume_at = resume_at


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR `payload` with the 4-byte `mask` repeated (one big-integer XOR, no loop per byte)."""
    size = len(payload)
    if not size:
        return payload
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


class FrameReader:
    """The parser state of one connection: bytes of an incomplete frame, and the fragments of an
    incomplete message. Both are empty between messages (an idle connection holds nothing)."""

    __slots__ = ("_broken", "_buffer", "_fragments", "_fragments_size", "_max", "_opcode", "_skip")

    def __init__(self, max_message_bytes: int) -> None:
        self._max = max_message_bytes
        self._buffer = b""
        self._fragments: list[bytes] | None = None
        self._fragments_size = 0
        self._opcode = Opcode.TEXT
        #: Bytes of a refused too-big frame still to come (dropped as they arrive).
        self._skip = 0
        self._broken = False

    def feed(self, data: bytes) -> list[Received | FrameError]:
        """The messages and control frames `data` completes, in order, and a FrameError
        where the client broke the protocol: after a too-big frame reading goes on past it
        (the connection is closing, but the client's close frame is still to be read); after
        any other violation nothing more is read."""
        if self._broken:
            return []
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        buffer = self._buffer + data if self._buffer else data
        received: list[Received | FrameError] = []
        offset = 0
        while True:
            try:
                frame = self._next_frame(buffer, offset)
            except FrameError as violation:
                received.append(violation)
                self._fragments, self._fragments_size = None, 0
                if violation.resume_at is None:
                    self._broken, self._buffer = True, b""
                    return received
                offset = min(violation.resume_at, len(buffer))
                self._skip = violation.resume_at - offset
                continue
            if frame is None:
                break
            offset, fin, opcode, payload = frame
            try:
                message = self._assemble(fin, opcode, payload)
            except FrameError as violation:
                received.append(violation)
                self._broken, self._buffer = True, b""
                return received
            if message is not None:
                received.append(message)
        self._buffer = buffer[offset:] if offset < len(buffer) else b""
        return received

    def _next_frame(self, buffer: bytes, offset: int) -> tuple[int, bool, Opcode, bytes] | None:
        """(offset after it, FIN, opcode, unmasked payload) of the frame at `offset`; None if it
        is not all there yet."""
        available = len(buffer) - offset
        if available < 2:
            return None
        first, second = buffer[offset], buffer[offset + 1]
        if first & 0x70:
            raise FrameError(PROTOCOL_ERROR, "reserved bits set (no extension agreed)")
        if not second & 0x80:
            raise FrameError(PROTOCOL_ERROR, "client frames must be masked")
        try:
            opcode = Opcode(first & 0x0F)
        except ValueError:
            raise FrameError(PROTOCOL_ERROR, f"unknown opcode {first & 0x0F}") from None
        fin = bool(first & 0x80)
        size, header = second & 0x7F, 2
        if opcode >= Opcode.CLOSE and (size > 125 or not fin):
            raise FrameError(PROTOCOL_ERROR, "control frames are short and unfragmented")
        if size == 126:
            if available < 4:
                return None
            size, header = _MEDIUM.unpack_from(buffer, offset + 2)[0], 4
        elif size == 127:
            if available < 10:
                return None
            size, header = _LONG.unpack_from(buffer, offset + 2)[0], 10
        end = offset + header + 4 + size
        if opcode < Opcode.CLOSE and self._fragments_size + size > self._max:
            raise FrameError(MESSAGE_TOO_BIG, f"message above {self._max} bytes", end)
        if len(buffer) < end:
            return None
        mask = buffer[offset + header : offset + header + 4]
        return end, fin, opcode, unmask(buffer[offset + header + 4 : end], mask)

    def _assemble(self, fin: bool, opcode: Opcode, payload: bytes) -> Received | None:
        if opcode >= Opcode.CLOSE:
            return Received(opcode, payload)  # control frames may come between fragments
        if opcode is Opcode.CONTINUATION:
            if self._fragments is None:
                raise FrameError(PROTOCOL_ERROR, "continuation without a message")
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            if not fin:
                return None
            message = Received(self._opcode, b"".join(self._fragments))
            self._fragments, self._fragments_size = None, 0
            return message
        if self._fragments is not None:
            raise FrameError(PROTOCOL_ERROR, "a new message inside a fragmented one")
        if fin:
            return Received(opcode, payload)
        self._opcode = opcode
        self._fragments, self._fragments_size = [payload], len(payload)
        return None


def close_code_of(payload: bytes) -> int | None:
    """The status code of a close frame's payload; None if it carries none."""
    if len(payload) < 2:
        return None
    return int(_MEDIUM.unpack_from(payload)[0])
