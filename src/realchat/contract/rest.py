"""REST bodies of the contract, as msgspec structs: the gateway decodes requests and encodes
replies with them, the SDK encodes requests and decodes replies with them, and the OpenAPI
document is generated from them (`contract/routes.py`), so none of the three can drift.

A rule a service applies itself, with its own message, is stated for the document only
(`documented`): the decoder takes any string there and the service refuses what breaks it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from realchat.contract import limits
from realchat.contract.frames import Message, Time

__all__ = [
    "AddMembers",
    "Blocked",
    "Conversation",
    "ConversationsPage",
    "CreateConversation",
    "Credentials",
    "EditMessage",
    "ErrorBody",
    "ErrorDetail",
    "HistoryPage",
    "Message",
    "PasswordChange",
    "Presences",
    "RenameConversation",
    "SendMessage",
    "Token",
    "User",
    "UserPresence",
]


def documented(**schema: Any) -> msgspec.Meta:
    """A rule the document states and the decoder leaves to the service behind it."""
    return msgspec.Meta(extra_json_schema=schema)


#: An id: a UUID string (the services refuse anything else with `invalid_<field>`).
Id = Annotated[str, documented(format="uuid")]
Username = Annotated[str, documented(pattern=limits.USERNAME_PATTERN)]
Password = Annotated[
    str,
    documented(minLength=limits.MIN_PASSWORD_CHARS, maxLength=limits.MAX_PASSWORD_CHARS),
]
#: Text the chat service stores: no NUL characters.
_NO_NUL = "^[^\x00]*$"
ClientMsgId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.MAX_CLIENT_MSG_ID_CHARS, pattern=_NO_NUL)
]
Content = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.MAX_CONTENT_CHARS, pattern=_NO_NUL)
]
Title = Annotated[str, msgspec.Meta(max_length=limits.MAX_TITLE_CHARS, pattern=_NO_NUL)]


class ErrorDetail(msgspec.Struct, frozen=True):
    code: str
    message: str


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error: `{"error": {"code", "message"}}` (`contract/error_codes.py`)."""

    error: ErrorDetail


# -- accounts ------------------------------------------------------------------------------------


class Credentials(msgspec.Struct, frozen=True):
    """The body of `POST /v1/users` and `POST /v1/tokens`. Upper-case ASCII is folded to
    lower-case before the username rule is checked."""

    username: Username
    password: Password


class PasswordChange(msgspec.Struct, frozen=True):
    """The body of `PUT /v1/users/me/password`."""

    current_password: str
    new_password: Password


class User(msgspec.Struct, frozen=True):
    user_id: str
    username: str


class Token(msgspec.Struct, frozen=True):
    access_token: str
    #: Seconds until the token expires.
    expires_in: int
    token_type: str = "bearer"


# -- conversations -------------------------------------------------------------------------------


class CreateConversation(msgspec.Struct, frozen=True):
    """The caller is always a member; `member_ids` names the others."""

    member_ids: list[Id] = []
    title: Title | None = None


class AddMembers(msgspec.Struct, frozen=True):
    user_ids: Annotated[list[Id], msgspec.Meta(min_length=1)]


class RenameConversation(msgspec.Struct, frozen=True):
    title: Title


class Conversation(msgspec.Struct, frozen=True):
    conversation_id: str
    title: str | None
    member_ids: list[str]
    last_seq: int
    #: Always sent by the server (None only in a conversation built by hand).
    created_at: Time | None = None
    #: The caller's read position: the highest seq any of their devices acknowledged.
    acked_seq: int = 0
    #: Messages after `acked_seq` that others sent (the caller's own count as read), at most
    #: `limits.MAX_UNREAD_COUNTED` (show "999+" beyond).
    unread_count: int = 0


class ConversationsPage(msgspec.Struct, frozen=True):
    """A page of the caller's conversations, by conversation id."""

    conversations: list[Conversation]
    #: Pass as `cursor` for the next page; null on the last page.
    next_cursor: str | None = None


class Blocked(msgspec.Struct, frozen=True):
    """Users the caller blocked (oldest first)."""

    user_ids: list[str]


# -- messages ------------------------------------------------------------------------------------


class SendMessage(msgspec.Struct, frozen=True):
    client_msg_id: ClientMsgId
    content: Content


class EditMessage(msgspec.Struct, frozen=True):
    #: The client's id for this edit: a retry with the same id and content is the same edit.
    client_change_id: ClientMsgId
    content: Content


class HistoryPage(msgspec.Struct, frozen=True):
    """Up to `limit` messages after `after_seq`, ascending by seq; the conversation's
    `last_seq`."""

    messages: list[Message]
    last_seq: int


# -- presence ------------------------------------------------------------------------------------


class UserPresence(msgspec.Struct, frozen=True):
    user_id: str
    status: Literal["online", "offline"]
    #: When the status was announced; null for a user never seen online.
    since: Time | None


class Presences(msgspec.Struct, frozen=True):
    """Only the caller and users sharing a conversation with them; other ids are left out."""

    users: list[UserPresence]
