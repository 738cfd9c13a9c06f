"""What `RealChatClient.events()` yields besides messages: receipts, presence, server notices and
the connection's ups and downs. All immutable; match on the type:

    async for event in client.events():
        match event:
            case Receipt(conversation_id=c, user_id=u, seq=s): ...
            case ReadPosition(conversation_id=c, seq=s): ...
            case Presence(user_id=u, status=s): ...
            case LiveDelivery(paused=p): ...
            case Membership(conversation_id=c, change=ch, user_ids=u): ...
            case Typing(conversation_id=c, user_id=u, typing=t): ...
            case MessageUpdate(message=m): ...         # m.version, m.deleted, m.content
            case ConversationUpdate(conversation_id=c, title=t): ...
            case Connected() | Disconnected() | ServerNotice(): ...
"""

from __future__ import annotations

from dataclasses import dataclass

from realchat.contract.frames import (
    ConversationUpdateFrame,
    LiveFrame,
    MemberFrame,
    MessageUpdateFrame,
    PresenceFrame,
    ReadFrame,
    ReceiptFrame,
    UserTypingFrame,
)

#: Another member acknowledged a conversation up to `seq` (the contract's `receipt` frame).
Receipt = ReceiptFrame
#: This user's own read position moved (an ack from any of their devices): unread counts
#: shown elsewhere drop to the messages after `seq`.
ReadPosition = ReadFrame
#: A user who shares a conversation went `online` or `offline` (the contract's `presence` frame).
Presence = PresenceFrame
#: Live delivery paused (the gateway lost its event bus) or resumed. While paused the client
#: syncs every `ClientOptions.paused_sync_s` by itself: messages keep coming, only later.
LiveDelivery = LiveFrame
#: Members were added to a conversation, left it, or were removed (the contract's `member` frame).
Membership = MemberFrame
#: A message was edited or deleted (its new state, `message.version` grown): always after the
#: message itself; apply it only above the version held. Not replayed: a sync's messages carry
#: the current state.
MessageUpdate = MessageUpdateFrame
#: A member renamed a conversation.
ConversationUpdate = ConversationUpdateFrame
#: A member started or stopped typing (the contract's `typing` frame); `TypingTracker` applies
#: the expiry rule.
Typing = UserTypingFrame


@dataclass(frozen=True)
class ServerNotice:
    """An `error` frame that does not answer one of this client's pending sends (a refused ack,
    a sync position for a foreign conversation, a bad frame...). The connection stays open."""

    code: str
    message: str
    client_msg_id: str | None = None


@dataclass(frozen=True)
class Connected:
    """A connection completed its handshake (hello, sync, sync_done): the client is live."""

    user_id: str
    session_id: str
    #: 1 for the first connection of this client, then 2, 3, ... after reconnects.
    connection: int


@dataclass(frozen=True)
class Disconnected:
    """A connection ended or a connection attempt failed."""

    #: The WebSocket close code (4008, 1001, 1006 for a dropped connection...), None if the
    #: connection was never established.
    code: int | None
    reason: str
    #: Seconds until the next attempt; None when the client does not reconnect (closed, 4001).
    reconnect_in: float | None


Event = (
    Receipt
    | ReadPosition
    | Presence
    | LiveDelivery
    | Membership
    | Typing
    | MessageUpdate
    | ConversationUpdate
    | ServerNotice
    | Connected
    | Disconnected
)
