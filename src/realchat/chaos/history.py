"""What the chaos clients record, one JSON object per line: acknowledged sends, messages as the
application received them, and each client's counters. The checker reads nothing else from
the clients."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import msgspec


class Sent(msgspec.Struct, tag="sent", frozen=True):
    """A send the server acknowledged (send_ok) to `client`."""

    client: str
    conversation_id: str
    client_msg_id: str
    seq: int
    message_id: str
    #: When the send was started and when it was acknowledged (epoch seconds).
    started_at: float
    at: float


class Received(msgspec.Struct, tag="received", frozen=True):
    """A message handed to the application of `client`, in arrival order."""

    client: str
    conversation_id: str
    seq: int
    message_id: str
    at: float
    #: The message's version as handed over (a sync gives the current one).
    version: int = 1


class Edited(msgspec.Struct, tag="edited", frozen=True):
    """An edit the server acknowledged to `client`: the message is at `version` or later."""

    client: str
    conversation_id: str
    seq: int
    version: int
    at: float


class Updated(msgspec.Struct, tag="updated", frozen=True):
    """A change (`message_update`) handed to the application of `client`, in arrival order."""

    client: str
    conversation_id: str
    seq: int
    version: int
    at: float


class Refused(msgspec.Struct, tag="refused", frozen=True):
    """A send attempt the server refused (`code`); `retried`: the client sent it again with the
    same `client_msg_id` (a retriable refusal), else it gave the message up."""

    client: str
    conversation_id: str
    client_msg_id: str
    code: str
    at: float
    retried: bool


class Link(msgspec.Struct, tag="link", frozen=True):
    """A connection of `client` completed its handshake (`ready`, with the gateway's session
    id) or ended (`lost`, with the close code and reason): what a stalled send is read
    against."""

    client: str
    state: str
    at: float
    session_id: str | None = None
    code: int | None = None
    reason: str = ""


class ClientSummary(msgspec.Struct, tag="client", frozen=True):
    """One client (a device) at the end of the run."""

    client: str
    user_id: str
    #: Copies the client dropped as already seen (redeliveries): allowed on the wire.
    wire_duplicates: int
    reconnects: int
    #: Events (changes, receipts...) the SDK dropped because the application read too slowly.
    events_dropped: int = 0


class FaultMark(msgspec.Struct, tag="fault", frozen=True):
    """A fault was injected at `at` and its component was back (restarted, ready) at
    `restored_at`."""

    name: str
    at: float
    restored_at: float


Record = Sent | Received | Edited | Updated | Refused | Link | ClientSummary | FaultMark
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Record)


class HistoryWriter:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = path.open("ab")

    def write(self, record: Record) -> None:
        self._file.write(_encoder.encode(record) + b"\n")

    def close(self) -> None:
        self._file.close()


def read_history(path: Path) -> list[Record]:
    with path.open("rb") as lines:
        return [_decoder.decode(line) for line in lines if line.strip()]
