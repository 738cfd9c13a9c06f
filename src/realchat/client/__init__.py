"""RealChat's async Python client SDK: the client side of the at-least-once contract (api-v1).

Guarantees, as the application sees them (limits in docs/client-sdk.md):

- `RealChatClient.messages()` yields each message once per `(conversation_id, seq)`, in `seq`
  order per conversation and without gaps, across reconnects. Duplicates (redeliveries, syncs,
  a `send_ok` and a `message` for the same message) are dropped; a message that arrives ahead
  of a gap is held back until the gap is filled (by the server or by a `sync` the client sends
  when the gap lasts `gap_timeout_s`). The hold-back buffer is capped per conversation.
- `RealChatClient.send()` completes exactly once: the stored message, a typed `SendError`, or
  `SendTimeout`. A send cut off by a disconnect is written again, with the same
  `client_msg_id`, on the next connection; the server stores it once.
- The connection reconnects by itself with jittered exponential backoff and syncs after every
  (re)connect. A client from `login()` (or given a `token_provider`) renews its token before
  it expires and once after a refusal; a refusal that renewal does not cure (close 4001)
  stops the client with `Unauthorized`.

Modules: `api` (the client), `session` (handshake, sends, acks), `connection` (WebSocket,
reconnects), `ordering` (pure: dedup, hold-back, gaps), `tokens` (renewal), `typing` (pure: who
is typing), `rest`, `events`, `errors`, `options`.
"""

from realchat.client.api import RealChatClient
from realchat.client.errors import (
    ApiError,
    ClientClosed,
    ConversationNotFound,
    IdempotencyConflict,
    InvalidContent,
    NotAMember,
    RateLimited,
    RealChatError,
    SendError,
    SendTimeout,
    ServerError,
    Unauthorized,
)
from realchat.client.events import (
    Connected,
    ConversationUpdate,
    Disconnected,
    Event,
    LiveDelivery,
    Membership,
    MessageUpdate,
    Presence,
    ReadPosition,
    Receipt,
    ServerNotice,
    Typing,
)
from realchat.client.options import ClientOptions
from realchat.client.rest import (
    Conversation,
    Device,
    HistoryPage,
    NotificationSettings,
    Token,
    User,
)
from realchat.client.tokens import TokenProvider
from realchat.client.typing import TypingTracker
from realchat.contract.frames import Message

__all__ = [
    "ApiError",
    "ClientClosed",
    "ClientOptions",
    "Connected",
    "Conversation",
    "ConversationNotFound",
    "ConversationUpdate",
    "Device",
    "Disconnected",
    "Event",
    "HistoryPage",
    "IdempotencyConflict",
    "InvalidContent",
    "LiveDelivery",
    "Membership",
    "Message",
    "MessageUpdate",
    "NotAMember",
    "NotificationSettings",
    "Presence",
    "RateLimited",
    "ReadPosition",
    "RealChatClient",
    "RealChatError",
    "Receipt",
    "SendError",
    "SendTimeout",
    "ServerError",
    "ServerNotice",
    "Token",
    "TokenProvider",
    "Typing",
    "TypingTracker",
    "Unauthorized",
    "User",
]
