"""Each protocol's session, fed the frames its server sends: handshake, deliveries, pings,
refusals (no server needed)."""

from __future__ import annotations

import json

import pytest

from realchat.loadtest.fanout.payload import Stamp, encode
from realchat.loadtest.fanout.session import SessionError
from realchat.loadtest.fanout.session_centrifugo import CentrifugoSession
from realchat.loadtest.fanout.session_realchat import RealChatSession

PAYLOAD = encode("t1", 7, 123456789)
HELLO = json.dumps({"type": "hello", "user_id": "u", "session_id": "s", "heartbeat_s": 20.0})


def _message(content: str, seq: int = 1) -> str:
    message = {
        "message_id": "m",
        "conversation_id": "c",
        "seq": seq,
        "sender_id": "u2",
        "content": content,
        "created_at": "2026-12-05T05:00:00+00:00",
    }
    return json.dumps({"type": "message", "message": message})


def test_realchat_syncs_after_hello_and_is_ready_at_sync_done() -> None:
    session = RealChatSession()
    assert session.start() == []
    after_hello = session.receive(HELLO)
    [sync] = [json.loads(r) for r in after_hello.replies]
    assert sync["type"] == "sync"
    assert sync.get("positions") is None  # from the acknowledged positions
    assert not after_hello.ready
    assert session.receive(json.dumps({"type": "sync_done", "positions": {}})).ready


def test_realchat_message_frames_yield_their_stamp_and_foreign_messages_none() -> None:
    session = RealChatSession()
    assert session.receive(_message(PAYLOAD)).stamps == [Stamp("t1", 7, 123456789)]
    assert session.receive(_message("someone typing by hand")).stamps == []


def test_realchat_ignores_frames_it_does_not_know_and_fails_on_errors() -> None:
    session = RealChatSession()
    assert session.receive(json.dumps({"type": "typing_v2", "x": 1})).stamps == []
    assert session.receive(json.dumps({"type": "pong"})).replies == []
    with pytest.raises(SessionError, match="not_a_member"):
        session.receive(json.dumps({"type": "error", "code": "not_a_member", "message": "no"}))


def test_centrifugo_connects_then_subscribes_then_is_ready() -> None:
    session = CentrifugoSession("jwt", "bench:r1")
    assert [json.loads(f) for f in session.start()] == [{"id": 1, "connect": {"token": "jwt"}}]
    connected = session.receive(json.dumps({"id": 1, "connect": {"client": "c1", "ping": 25}}))
    assert [json.loads(f) for f in connected.replies] == [
        {"id": 2, "subscribe": {"channel": "bench:r1"}}
    ]
    assert not connected.ready
    assert session.receive(json.dumps({"id": 2, "subscribe": {}})).ready


def test_centrifugo_reads_every_line_of_a_batched_frame_and_answers_pings() -> None:
    session = CentrifugoSession("jwt", "bench:r1")
    push = {"push": {"channel": "bench:r1", "pub": {"data": PAYLOAD, "offset": 3}}}
    frame = "\n".join([json.dumps(push), "{}", json.dumps(push)])
    outcome = session.receive(frame)
    assert outcome.stamps == [Stamp("t1", 7, 123456789)] * 2
    assert outcome.replies == ["{}"]


def test_centrifugo_refusal_is_an_error_and_foreign_publications_are_skipped() -> None:
    session = CentrifugoSession("jwt", "bench:r1")
    foreign = {"push": {"channel": "bench:r1", "pub": {"data": {"not": "ours"}}}}
    assert session.receive(json.dumps(foreign)).stamps == []
    with pytest.raises(SessionError, match="token expired"):
        session.receive(json.dumps({"id": 1, "error": {"code": 109, "message": "token expired"}}))
