"""RealChat's side of a bench client: `/v1/ws`, wait for `hello`, `sync`, then listen.

The client syncs before it counts as subscribed: the protocol promises a connection's live
messages only in order after its first sync, so a listener that skipped it would measure a path
real clients do not take. The bench conversation is new and empty, so the sync is one round trip.
"""

from __future__ import annotations

import msgspec

from realchat.contract.frames import (
    ErrorFrame,
    HelloFrame,
    MessageFrame,
    ServerFrame,
    SyncDoneFrame,
    SyncFrame,
)
from realchat.loadtest.fanout.payload import PayloadError, decode
from realchat.loadtest.fanout.session import Outcome, SessionError

_decoder = msgspec.json.Decoder(ServerFrame)
_SYNC = msgspec.json.encode(SyncFrame()).decode()


class RealChatSession:
    """States: waiting for hello -> syncing -> listening."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = "hello"

    def start(self) -> list[str]:
        return []  # the server speaks first

    def receive(self, text: str) -> Outcome:
        try:
            frame = _decoder.decode(text)
        except msgspec.ValidationError:
            return Outcome()  # a frame type newer than this client: not a delivery
        except msgspec.DecodeError as exc:
            raise SessionError(f"not JSON from the gateway: {text[:80]!r}") from exc
        if isinstance(frame, MessageFrame):
            try:
                return Outcome(stamps=[decode(frame.message.content)])
            except PayloadError:
                return Outcome()  # a message this run did not publish
        if isinstance(frame, ErrorFrame):
            raise SessionError(f"gateway error {frame.code}: {frame.message}")
        if isinstance(frame, HelloFrame) and self._state == "hello":
            self._state = "syncing"
            return Outcome(replies=[_SYNC])
        if isinstance(frame, SyncDoneFrame) and self._state == "syncing":
            self._state = "listening"
            return Outcome(ready=True)
        return Outcome()
