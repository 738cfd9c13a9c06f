"""The idle load client's reading of server frames and its pongs."""

from __future__ import annotations

import struct

from realchat.gateway.wsframe import PING, text_frame
from realchat.gateway.wsreader import FrameReader, Opcode, Received
from realchat.loadtest.idle_client import masked_pong, server_frames


def test_server_frames_are_split_whole_and_a_partial_one_waits() -> None:
    hello = text_frame(b'{"type":"hello"}')
    long = text_frame(b"x" * 300)
    buffer = bytearray(hello + PING + long[:100])
    assert server_frames(buffer) == [(0x1, b'{"type":"hello"}'), (0x9, b"")]
    buffer += long[100:]
    assert server_frames(buffer) == [(0x1, b"x" * 300)]
    assert buffer == b""


def test_the_pong_is_a_masked_frame_the_gateway_reads() -> None:
    reader = FrameReader(max_message_bytes=1024)
    assert reader.feed(masked_pong(b"") + masked_pong(b"id")) == [
        Received(Opcode.PONG, b""),
        Received(Opcode.PONG, b"id"),
    ]
    assert struct.unpack("!BB", masked_pong(b"")[:2]) == (0x8A, 0x80)
