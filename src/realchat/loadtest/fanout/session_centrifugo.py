"""Centrifugo's side of a bench client: its JSON protocol on `/connection/websocket`.

`connect` with an HS256 token (reply id 1), `subscribe` to the bench channel (reply id 2), then
publications arrive as pushes. The server may put several JSON objects into one WebSocket frame,
one per line, and pings with an empty object that must be answered with one (or it disconnects).
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec

from realchat.loadtest.fanout.payload import PayloadError, decode
from realchat.loadtest.fanout.session import Outcome, SessionError

_CONNECT_ID = 1
_SUBSCRIBE_ID = 2
_PONG = "{}"


def _command(command_id: int, method: str, params: dict[str, Any]) -> str:
    return msgspec.json.encode({"id": command_id, method: params}).decode()


class CentrifugoSession:
    """States: connecting -> subscribing -> listening."""

    __slots__ = ("_channel", "_state", "_token")

    def __init__(self, token: str, channel: str) -> None:
        self._token = token
        self._channel = channel
        self._state = "connecting"

    def start(self) -> list[str]:
        return [_command(_CONNECT_ID, "connect", {"token": self._token})]

    def receive(self, text: str) -> Outcome:
        outcome = Outcome()
        for line in text.split("\n"):
            if line:
                self._one(line, outcome)
        return outcome

    def _one(self, line: str, outcome: Outcome) -> None:
        try:
            reply = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            raise SessionError(f"not JSON from Centrifugo: {line[:80]!r}") from exc
        if not isinstance(reply, dict):
            raise SessionError(f"unexpected Centrifugo frame: {line[:80]!r}")
        if not reply:
            outcome.replies.append(_PONG)
            return
        if "error" in reply:
            raise SessionError(f"Centrifugo error: {reply['error']}")
        if "push" in reply:
            data = reply["push"].get("pub", {}).get("data")
            if isinstance(data, str):
                with contextlib.suppress(PayloadError):  # one this run did not make
                    outcome.stamps.append(decode(data))
            return
        command_id = reply.get("id")
        if command_id == _CONNECT_ID and self._state == "connecting":
            self._state = "subscribing"
            outcome.replies.append(_command(_SUBSCRIBE_ID, "subscribe", {"channel": self._channel}))
        elif command_id == _SUBSCRIBE_ID and self._state == "subscribing":
            self._state = "listening"
            outcome.ready = True
