"""The REST routes of the contract, declared once: the gateway serves them (its own, or
forwarded to the auth service), the OpenAPI document is generated from them
(`gateway/openapi.py`), and their query parameters carry the bounds the gateway checks.

Every operation may also answer what the document adds to all of them: 401 without a valid
token (unless `public`), 400/413/422 for a bad body, 422 for a bad query, 503 while a service
behind the gateway is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from realchat.contract import limits, push, rest
from realchat.contract.error_codes import ErrorCode


class Server(Enum):
    """Who answers a route: the gateway itself, or the auth service behind it."""

    GATEWAY = "gateway"
    AUTH = "auth"


@dataclass(frozen=True)
class Reply:
    """One status of an operation: `body`, or the error body for a 4xx/5xx with one of
    `codes`; no body for a 204."""

    description: str
    body: type | None = None
    codes: tuple[ErrorCode, ...] = ()


def refused(*codes: ErrorCode, why: str = "") -> Reply:
    """An error status and the codes it comes with (`why`: when, if the codes do not say)."""
    named = ", ".join(f"`{code}`" for code in codes)
    return Reply(f"{named}: {why}" if why else named, codes=codes)


@dataclass(frozen=True)
class IntQuery:
    """An integer query parameter, `default` when left out, refused outside its bounds."""

    name: str
    default: int
    minimum: int
    maximum: int
    description: str = ""

    def schema(self) -> dict[str, Any]:
        return {
            "type": "integer",
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
        }


@dataclass(frozen=True)
class IdQuery:
    """An id (UUID) in the query: one (`most` 1), or a comma-separated list of 1 to `most`."""

    name: str
    required: bool
    most: int = 1
    description: str = ""

    def schema(self) -> dict[str, Any]:
        uuid = {"type": "string", "format": "uuid"}
        if self.most > 1:
            return {"type": "array", "items": uuid, "minItems": 1, "maxItems": self.most}
        if self.required:
            return uuid
        return {"anyOf": [uuid, {"type": "string", "maxLength": 0}]}  # empty: left out


Query = IntQuery | IdQuery

#: The path parameters, by name.
PATH_PARAMETERS: Mapping[str, dict[str, Any]] = {
    "conversation_id": {"type": "string", "format": "uuid"},
    "user_id": {"type": "string", "format": "uuid"},
    "device_id": {"type": "string", "format": "uuid"},
    "seq": {"type": "integer", "minimum": 1, "maximum": limits.MAX_SEQ},
    "username": {"type": "string"},
}


@dataclass(frozen=True)
class Route:
    #: The operation's id (`operationId`) and the name of the gateway's handler.
    name: str
    method: str
    path: str
    summary: str
    replies: Mapping[int, Reply]
    body: type | None = None
    query: tuple[Query, ...] = ()
    #: Served without a token.
    public: bool = False
    server: Server = Server.GATEWAY


HISTORY_LIMIT = IntQuery(
    "limit", limits.DEFAULT_HISTORY_LIMIT, 1, limits.MAX_HISTORY_LIMIT, "messages at most"
)
AFTER_SEQ = IntQuery("after_seq", 0, 0, limits.MAX_SEQ, "the messages after this seq")
CONVERSATIONS_LIMIT = IntQuery(
    "limit", limits.DEFAULT_CONVERSATIONS_PAGE, 1, limits.MAX_CONVERSATIONS_PAGE, "at most"
)
CURSOR = IdQuery("cursor", required=False, description="next_cursor of the previous page")
PRESENCE_USERS = IdQuery(
    "user_ids",
    required=True,
    most=limits.MAX_PRESENCE_USERS,
    description=f"comma-separated user ids (1-{limits.MAX_PRESENCE_USERS})",
)

_ACCOUNTS = (
    Route(
        "create_user",
        "POST",
        "/v1/users",
        "Create an account",
        {
            201: Reply("created", rest.User),
            409: refused(ErrorCode.USERNAME_TAKEN),
            429: refused(ErrorCode.TOO_MANY_SIGNUPS, why="from this address"),
        },
        body=rest.Credentials,
        public=True,
        server=Server.AUTH,
    ),
    Route(
        "issue_token",
        "POST",
        "/v1/tokens",
        "Get an access token",
        {
            200: Reply("token", rest.Token),
            401: refused(ErrorCode.INVALID_CREDENTIALS),
            429: refused(ErrorCode.TOO_MANY_ATTEMPTS),
        },
        body=rest.Credentials,
        public=True,
        server=Server.AUTH,
    ),
    Route(
        "revoke_tokens",
        "DELETE",
        "/v1/tokens",
        "Log out: revoke every access token of the caller (all devices)",
        {204: Reply("revoked")},
        server=Server.AUTH,
    ),
    Route(
        "change_password",
        "PUT",
        "/v1/users/me/password",
        "Change the password (revokes every access token of the caller)",
        {
            204: Reply("changed"),
            401: refused(
                ErrorCode.INVALID_CREDENTIALS,
                ErrorCode.UNAUTHORIZED,
                why="a wrong current password, or a token not accepted",
            ),
            429: refused(ErrorCode.TOO_MANY_ATTEMPTS),
        },
        body=rest.PasswordChange,
        server=Server.AUTH,
    ),
    Route(
        "user_by_username",
        "GET",
        "/v1/users/by-username/{username}",
        "Find a user",
        {200: Reply("user", rest.User), 404: refused(ErrorCode.USER_NOT_FOUND)},
        server=Server.AUTH,
    ),
)

_CONVERSATIONS = (
    Route(
        "create_conversation",
        "POST",
        "/v1/conversations",
        "Create a conversation (the caller is a member)",
        {
            201: Reply("created", rest.Conversation),
            403: refused(ErrorCode.BLOCKED, why="a member cannot be added by the caller"),
            422: refused(
                ErrorCode.UNKNOWN_USERS, ErrorCode.TOO_MANY_MEMBERS, why="or a field breaks a rule"
            ),
        },
        body=rest.CreateConversation,
    ),
    Route(
        "list_conversations",
        "GET",
        "/v1/conversations",
        "The caller's conversations, a page at a time",
        {200: Reply("a page", rest.ConversationsPage)},
        query=(CONVERSATIONS_LIMIT, CURSOR),
    ),
    Route(
        "rename",
        "PATCH",
        "/v1/conversations/{conversation_id}",
        "Rename the conversation (any member); members get a conversation_update",
        {
            200: Reply("the conversation", rest.Conversation),
            403: refused(ErrorCode.NOT_A_MEMBER),
            404: refused(ErrorCode.CONVERSATION_NOT_FOUND),
        },
        body=rest.RenameConversation,
    ),
    Route(
        "add_members",
        "POST",
        "/v1/conversations/{conversation_id}/members",
        "Add members",
        {
            200: Reply("the conversation", rest.Conversation),
            403: refused(ErrorCode.NOT_A_MEMBER, ErrorCode.BLOCKED),
            404: refused(ErrorCode.CONVERSATION_NOT_FOUND),
            422: refused(
                ErrorCode.UNKNOWN_USERS, ErrorCode.TOO_MANY_MEMBERS, why="or a field breaks a rule"
            ),
        },
        body=rest.AddMembers,
    ),
    Route(
        "remove_member",
        "DELETE",
        "/v1/conversations/{conversation_id}/members/{user_id}",
        "Leave (the caller's own id) or, as the creator, remove a member",
        {
            204: Reply("left or removed"),
            403: refused(ErrorCode.NOT_A_MEMBER, ErrorCode.NOT_THE_CREATOR),
            404: refused(ErrorCode.CONVERSATION_NOT_FOUND, ErrorCode.MEMBER_NOT_FOUND),
        },
    ),
    Route(
        "list_blocked",
        "GET",
        "/v1/blocks",
        "Users the caller blocked",
        {200: Reply("the users blocked", rest.Blocked)},
    ),
    Route(
        "block",
        "PUT",
        "/v1/blocks/{user_id}",
        "Block a user: no adding the caller, no presence either way",
        {
            204: Reply("done"),
            404: refused(ErrorCode.USER_NOT_FOUND),
            422: refused(ErrorCode.INVALID_USER_ID, why="oneself"),
        },
    ),
    Route(
        "unblock",
        "DELETE",
        "/v1/blocks/{user_id}",
        "Unblock a user",
        {204: Reply("done"), 404: refused(ErrorCode.USER_NOT_FOUND, why="an id that is no UUID")},
    ),
)

_MESSAGES = (
    Route(
        "history",
        "GET",
        "/v1/conversations/{conversation_id}/messages",
        "History, ascending by seq",
        {
            200: Reply("messages", rest.HistoryPage),
            403: refused(ErrorCode.NOT_A_MEMBER),
            404: refused(ErrorCode.CONVERSATION_NOT_FOUND),
        },
        query=(AFTER_SEQ, HISTORY_LIMIT),
    ),
    Route(
        "send",
        "POST",
        "/v1/conversations/{conversation_id}/messages",
        "Send a message (idempotent per client_msg_id)",
        {
            201: Reply("sent", rest.Message),
            200: Reply("replay of an earlier send", rest.Message),
            403: refused(ErrorCode.NOT_A_MEMBER),
            404: refused(ErrorCode.CONVERSATION_NOT_FOUND),
            409: refused(ErrorCode.IDEMPOTENCY_CONFLICT),
            429: refused(ErrorCode.RATE_LIMITED),
        },
        body=rest.SendMessage,
    ),
    Route(
        "edit",
        "PATCH",
        "/v1/conversations/{conversation_id}/messages/{seq}",
        "Edit one's own message (idempotent per client_change_id); version + 1",
        {
            200: Reply("the message as edited (or as a replayed edit left it)", rest.Message),
            403: refused(ErrorCode.NOT_A_MEMBER, ErrorCode.NOT_THE_SENDER),
            404: refused(ErrorCode.CONVERSATION_NOT_FOUND, ErrorCode.MESSAGE_NOT_FOUND),
            409: refused(ErrorCode.IDEMPOTENCY_CONFLICT, ErrorCode.MESSAGE_DELETED),
        },
        body=rest.EditMessage,
    ),
    Route(
        "delete",
        "DELETE",
        "/v1/conversations/{conversation_id}/messages/{seq}",
        "Delete one's own message: a tombstone at the same seq (idempotent)",
        {
            200: Reply("the tombstone", rest.Message),
            403: refused(ErrorCode.NOT_A_MEMBER, ErrorCode.NOT_THE_SENDER),
            404: refused(ErrorCode.CONVERSATION_NOT_FOUND, ErrorCode.MESSAGE_NOT_FOUND),
        },
    ),
    Route(
        "presence",
        "GET",
        "/v1/presence",
        "Presence of the caller and of users sharing a conversation",
        {200: Reply("presence", rest.Presences)},
        query=(PRESENCE_USERS,),
    ),
)

_MUTED = "/v1/notification-settings/muted-conversations/{conversation_id}"
_PUSH = (
    Route(
        "register_device",
        "POST",
        "/v1/devices",
        "Register this device's push token (again: 200, the same device)",
        {
            201: Reply("registered", push.Device),
            200: Reply("already registered", push.Device),
            409: refused(ErrorCode.TOO_MANY_DEVICES),
        },
        body=push.RegisterDevice,
        server=Server.AUTH,
    ),
    Route(
        "devices",
        "GET",
        "/v1/devices",
        "The caller's push devices",
        {200: Reply("list", push.Devices)},
        server=Server.AUTH,
    ),
    Route(
        "unregister_device",
        "DELETE",
        "/v1/devices/{device_id}",
        "Remove a push device",
        {204: Reply("removed"), 404: refused(ErrorCode.DEVICE_NOT_FOUND)},
        server=Server.AUTH,
    ),
    Route(
        "notification_settings",
        "GET",
        "/v1/notification-settings",
        "Do-not-disturb and muted conversations",
        {200: Reply("settings", push.NotificationSettings)},
        server=Server.AUTH,
    ),
    Route(
        "update_notification_settings",
        "PATCH",
        "/v1/notification-settings",
        "Change do-not-disturb (fields left out keep their value)",
        {200: Reply("settings", push.NotificationSettings)},
        body=push.UpdateNotificationSettings,
        server=Server.AUTH,
    ),
    Route(
        "mute",
        "PUT",
        _MUTED,
        "Mute a conversation's push notifications",
        {204: Reply("muted"), 404: refused(ErrorCode.CONVERSATION_NOT_FOUND)},
        server=Server.AUTH,
    ),
    Route(
        "unmute",
        "DELETE",
        _MUTED,
        "Unmute a conversation",
        {
            204: Reply("unmuted"),
            404: refused(ErrorCode.CONVERSATION_NOT_FOUND, why="an id that is no UUID"),
        },
        server=Server.AUTH,
    ),
)

OPENAPI = Route(
    "openapi",
    "GET",
    "/v1/openapi.json",
    "This document",
    {200: Reply("the OpenAPI 3.1 document")},
    public=True,
)

#: Every REST route of the public API.
ROUTES: tuple[Route, ...] = (*_ACCOUNTS, *_CONVERSATIONS, *_MESSAGES, *_PUSH, OPENAPI)
