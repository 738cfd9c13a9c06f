"""What a client session must do on one protocol, without I/O: frames in, frames and stamps out.

The client worker (`client.py`) owns the sockets; a session only decides. So both servers are
driven by the same loop, and each protocol's parsing is unit-tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from realchat.loadtest.fanout.payload import Stamp


class SessionError(RuntimeError):
    """The server refused or broke the session (the message says how)."""


@dataclass(slots=True)
class Outcome:
    """What one received WebSocket frame asks of the client."""

    #: Text frames to send back, in order.
    replies: list[str] = field(default_factory=list)
    #: Bench payloads that arrived in this frame.
    stamps: list[Stamp] = field(default_factory=list)
    #: The handshake is complete with this frame (subscribed: deliveries may follow).
    ready: bool = False


class Session(Protocol):
    """One connection's protocol state. `start` once after the WebSocket opens, then `receive`
    for every text frame; both raise `SessionError` when the server refuses the session."""

    def start(self) -> list[str]: ...

    def receive(self, text: str) -> Outcome: ...
