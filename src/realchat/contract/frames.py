"""WebSocket frames: text frames holding one JSON object with a `type`.

Client frames are decoded strictly (unknown fields are ignored, wrong types are errors) into
tagged structs; server frames are encoded once and the same bytes go to every recipient.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from realchat.contract.error_codes import ErrorCode
from realchat.contract.limits import MAX_SEQ, MIN_SEQ

#: A moment: an RFC 3339 string on the wire (UTC, `Z`).
Time = Annotated[datetime, msgspec.Meta(extra_json_schema={"format": "date-time"})]


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    """A message as it is now. The change fields are left out while they hold their defaults,
    so a message never edited reads exactly as before they existed."""

    message_id: str
    conversation_id: str
    seq: int
    sender_id: str
    content: str
    created_at: Time
    #: 1 when sent, +1 per edit or delete: a client keeps the highest version it saw.
    version: int = 1
    edited_at: Time | None = None
    #: A tombstone: deleted by its sender, `content` empty, `seq` kept.
    deleted: bool = False


# -- client -> server ---------------------------------------------------------------------------


#: Bounds on what a frame may carry, far above what is valid (the chat service checks the real
#: rules: a UUID, a client_msg_id of 1-64 characters) and far below what would make an error
#: frame or a log line expensive: longer ids are refused as `invalid_frame` and never echoed.
ConversationId = Annotated[str, msgspec.Meta(max_length=64)]
ClientMsgId = Annotated[str, msgspec.Meta(max_length=256)]
#: Conversations one `sync` may name (the SDK sends them in chunks of 500).
MAX_SYNC_POSITIONS = 1000


class SendFrame(msgspec.Struct, tag="send", tag_field="type", frozen=True):
    conversation_id: ConversationId
    client_msg_id: ClientMsgId
    content: str


#: A seq as the chat service stores it (int64): larger numbers are bad frames, not crashes.
Seq = Annotated[int, msgspec.Meta(ge=MIN_SEQ, le=MAX_SEQ)]


SyncPositions = Annotated[dict[ConversationId, Seq], msgspec.Meta(max_length=MAX_SYNC_POSITIONS)]


class SyncFrame(msgspec.Struct, tag="sync", tag_field="type", frozen=True):
    positions: SyncPositions | None = None
    #: Per conversation, the change counter of the last `sync_done` the client took in: the
    #: messages up to its position changed since then come as `message_update` frames.
    changes: SyncPositions | None = None


class AckFrame(msgspec.Struct, tag="ack", tag_field="type", frozen=True):
    conversation_id: ConversationId
    seq: Seq


class PingFrame(msgspec.Struct, tag="ping", tag_field="type", frozen=True):
    pass


class TypingFrame(msgspec.Struct, tag="typing", tag_field="type", frozen=True):
    """The client's user started (`typing` true, repeated every few seconds while it lasts) or
    stopped typing in a conversation. Ephemeral: relayed to the members' connected devices,
    never stored."""

    conversation_id: ConversationId
    typing: bool = True


ClientFrame = SendFrame | SyncFrame | AckFrame | PingFrame | TypingFrame

_client_decoder = msgspec.json.Decoder(ClientFrame)


class BadFrame(ValueError):  # noqa: N818 - a verdict on a frame, reported to the client
    """Why a client frame was refused, as a contract error code and a human message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode_client_frame(data: str | bytes) -> ClientFrame:
    try:
        frame: ClientFrame = _client_decoder.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "Invalid value" in text and "`$.type`" in text:
            raise BadFrame(ErrorCode.UNKNOWN_TYPE, text) from None
        if "Object missing required field `type`" in text:
            raise BadFrame(ErrorCode.MISSING_TYPE, text) from None
        raise BadFrame(ErrorCode.INVALID_FRAME, text) from None
    except msgspec.DecodeError as exc:
        raise BadFrame(ErrorCode.INVALID_JSON, f"frame is not a JSON object: {exc}") from None
    except RecursionError:
        raise BadFrame(ErrorCode.INVALID_JSON, "frame is nested too deeply") from None
    return frame


# -- server -> client ---------------------------------------------------------------------------


class HelloFrame(msgspec.Struct, tag="hello", tag_field="type", frozen=True):
    user_id: str
    session_id: str
    heartbeat_s: float


class MessageFrame(msgspec.Struct, tag="message", tag_field="type", frozen=True):
    message: Message


class SendOkFrame(msgspec.Struct, tag="send_ok", tag_field="type", frozen=True):
    client_msg_id: str
    message: Message


class SyncDoneFrame(
    msgspec.Struct, tag="sync_done", tag_field="type", frozen=True, omit_defaults=True
):
    positions: dict[str, int]
    #: Each synced conversation's change counter: the client passes it as `changes` next time.
    changes: dict[str, int] | None = None


class ReceiptFrame(msgspec.Struct, tag="receipt", tag_field="type", frozen=True):
    conversation_id: str
    user_id: str
    seq: int


class ReadFrame(msgspec.Struct, tag="read", tag_field="type", frozen=True):
    """The user's own read position moved (an ack from any of their devices): what keeps
    unread counts right across devices. A state, not a delta: a repeat changes nothing."""

    conversation_id: str
    seq: int


class PresenceFrame(msgspec.Struct, tag="presence", tag_field="type", frozen=True):
    user_id: str
    status: Literal["online", "offline"]


class PongFrame(msgspec.Struct, tag="pong", tag_field="type", frozen=True):
    pass


class MemberFrame(msgspec.Struct, tag="member", tag_field="type", frozen=True):
    """Members were added to a conversation, left it, or were removed by its creator (`by`).
    A member who left or was removed gets this last, then nothing more of the conversation."""

    conversation_id: str
    change: Literal["added", "left", "removed"]
    user_ids: list[str]
    by: str


class LiveFrame(msgspec.Struct, tag="live", tag_field="type", frozen=True):
    """Whether live delivery is current. `paused`: the gateway lost the event bus; sends, history
    and `sync` still work, so a client syncs now and then until `paused` is false again."""

    paused: bool


class UserTypingFrame(msgspec.Struct, tag="typing", tag_field="type", frozen=True):
    """A member is typing (`typing` true) or stopped; a client forgets a `typing` true after
    `TYPING_EXPIRY_S` without a repeat, so a lost stop costs a few seconds, never a stuck line."""

    conversation_id: str
    user_id: str
    typing: bool


#: How long a receiver shows a member as typing after their last `typing` true (seconds).
TYPING_EXPIRY_S = 6.0
#: How often a client repeats `typing` true while its user keeps typing (seconds).
TYPING_REPEAT_S = 3.0


class MessageUpdateFrame(msgspec.Struct, tag="message_update", tag_field="type", frozen=True):
    """A message was edited or deleted: its state as of `message.version`. Comes after the
    message itself on every connection; a client replaces its copy only with a higher version
    (a repeat, or an update older than what a sync gave, changes nothing)."""

    message: Message


class ConversationUpdateFrame(
    msgspec.Struct, tag="conversation_update", tag_field="type", frozen=True
):
    """A member (`by`) renamed the conversation. Comes after the messages sent before it."""

    conversation_id: str
    title: str
    by: str


class ErrorFrame(msgspec.Struct, tag="error", tag_field="type", frozen=True, omit_defaults=True):
    code: str
    message: str
    client_msg_id: str | None = None


ServerFrame = (
    HelloFrame
    | MessageFrame
    | SendOkFrame
    | SyncDoneFrame
    | ReceiptFrame
    | ReadFrame
    | PresenceFrame
    | PongFrame
    | ErrorFrame
    | LiveFrame
    | MemberFrame
    | UserTypingFrame
    | MessageUpdateFrame
    | ConversationUpdateFrame
)

_encoder = msgspec.json.Encoder()


def encode(frame: ServerFrame) -> bytes:
    return _encoder.encode(frame)
