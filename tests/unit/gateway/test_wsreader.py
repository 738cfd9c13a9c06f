"""The gateway's reading of client frames (RFC 6455 section 5), byte by byte where it matters."""

from __future__ import annotations

import os
import struct

import pytest

from realchat.gateway.wsreader import (
    MESSAGE_TOO_BIG,
    PROTOCOL_ERROR,
    FrameError,
    FrameReader,
    Opcode,
    Received,
    close_code_of,
    unmask,
)


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """A frame as a client sends it: masked with a random key."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, (0x80 if masked else 0) | size)
    elif size < 65536:
        header = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, size)
    else:
        header = struct.pack("!BBQ", first, (0x80 if masked else 0) | 127, size)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_unmask_is_its_own_inverse_and_matches_a_byte_by_byte_xor() -> None:
    mask = b"\x01\x02\x03\xff"
    for size in (0, 1, 3, 4, 5, 125, 4096):
        payload = os.urandom(size)
        expected = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert unmask(payload, mask) == expected
        assert unmask(expected, mask) == payload


def test_frames_of_every_length_encoding_come_out_whole_fed_at_once_or_byte_by_byte() -> None:
    payloads = [b"", b"x", b"a" * 125, b"b" * 126, b"c" * 65535, b"d" * 65536]
    stream = b"".join(client_frame(Opcode.TEXT, p) for p in payloads)

    at_once = FrameReader(max_message_bytes=1 << 20).feed(stream)
    assert at_once == [Received(Opcode.TEXT, p) for p in payloads]

    reader = FrameReader(max_message_bytes=1 << 20)
    one_by_one: list[Received | FrameError] = []
    for i in range(len(stream)):
        one_by_one += reader.feed(stream[i : i + 1])
    assert one_by_one == at_once


def test_fragments_are_joined_and_control_frames_between_them_come_first() -> None:
    reader = FrameReader(max_message_bytes=100)
    stream = (
        client_frame(Opcode.TEXT, b'{"type":', fin=False)
        + client_frame(Opcode.PING, b"are you there")
        + client_frame(Opcode.CONTINUATION, b' "ping"', fin=False)
        + client_frame(Opcode.CONTINUATION, b"}")
        + client_frame(Opcode.BINARY, b"\x00\x01")
    )
    assert reader.feed(stream) == [
        Received(Opcode.PING, b"are you there"),
        Received(Opcode.TEXT, b'{"type": "ping"}'),
        Received(Opcode.BINARY, b"\x00\x01"),
    ]


def test_a_message_of_the_limit_is_taken_one_byte_more_is_refused_and_skipped() -> None:
    reader = FrameReader(max_message_bytes=1000)
    assert reader.feed(client_frame(Opcode.TEXT, b"x" * 1000)) == [
        Received(Opcode.TEXT, b"x" * 1000)
    ]
    too_big = client_frame(Opcode.TEXT, b"y" * 1001)
    close = client_frame(Opcode.CLOSE, struct.pack("!H", 1000))
    # Refused from its header, before its payload is there; the payload is dropped as it comes
    # and the client's close frame behind it is still read.
    first = reader.feed(too_big[:20])
    assert len(first) == 1
    assert isinstance(first[0], FrameError)
    assert first[0].code == MESSAGE_TOO_BIG
    assert reader.feed(too_big[20:] + close) == [Received(Opcode.CLOSE, struct.pack("!H", 1000))]


def test_fragments_count_together_against_the_limit() -> None:
    reader = FrameReader(max_message_bytes=10)
    got = reader.feed(
        client_frame(Opcode.TEXT, b"123456", fin=False)
        + client_frame(Opcode.CONTINUATION, b"789012")
        + client_frame(Opcode.TEXT, b"ok")
    )
    assert isinstance(got[0], FrameError)
    assert got[0].code == MESSAGE_TOO_BIG
    assert got[1:] == [Received(Opcode.TEXT, b"ok")]


@pytest.mark.parametrize(
    "stream",
    [
        client_frame(Opcode.TEXT, b"not masked", masked=False),
        bytes([0x80 | 0x40 | Opcode.TEXT]) + client_frame(Opcode.TEXT, b"rsv1")[1:],
        client_frame(0x3, b"reserved opcode"),
        client_frame(Opcode.CONTINUATION, b"nothing to continue"),
        client_frame(Opcode.PING, b"p" * 126),
        client_frame(Opcode.PING, b"fragmented", fin=False),
        client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.TEXT, b"b"),
    ],
    ids=[
        "unmasked",
        "rsv-bit",
        "unknown-opcode",
        "stray-continuation",
        "long-control",
        "fragmented-control",
        "message-in-message",
    ],
)
def test_protocol_errors_are_reported_once_and_nothing_after_is_read(stream: bytes) -> None:
    reader = FrameReader(max_message_bytes=1000)
    got = reader.feed(stream + client_frame(Opcode.TEXT, b"after"))
    assert len(got) == 1, got
    assert isinstance(got[0], FrameError)
    assert got[0].code == PROTOCOL_ERROR
    assert got[0].resume_at is None
    assert reader.feed(client_frame(Opcode.TEXT, b"later")) == []


def test_close_codes_are_read_from_the_payload() -> None:
    assert close_code_of(struct.pack("!H", 4001) + b"bye") == 4001
    assert close_code_of(b"") is None
