"""The OpenAPI document of the REST API, generated from the contract's pydantic models."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

from realchat.contract import push, rest

_MODELS: tuple[type[BaseModel], ...] = (
    rest.ErrorBody,
    rest.Credentials,
    rest.UserOut,
    rest.TokenOut,
    rest.CreateConversation,
    rest.AddMembers,
    rest.SendMessage,
    rest.RenameConversation,
    rest.EditMessage,
    rest.ConversationOut,
    rest.ConversationsOut,
    rest.PasswordChange,
    rest.BlockedOut,
    rest.MessageOut,
    rest.MessagesOut,
    rest.PresencesOut,
    push.RegisterDevice,
    push.DeviceOut,
    push.DevicesOut,
    push.UpdateNotificationSettings,
    push.NotificationSettingsOut,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _op(
    summary: str,
    responses: dict[int, tuple[str, type[BaseModel] | None]],
    body: type[BaseModel] | None = None,
    auth: bool = True,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {}}
    for status, (description, model) in responses.items():
        entry: dict[str, Any] = {"description": description}
        if status != 204:  # No Content
            schema = _ref(model) if model else _ref(rest.ErrorBody)
            entry["content"] = {"application/json": {"schema": schema}}
        op["responses"][str(status)] = entry
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if auth:
        op["security"] = [{"bearer": []}]
        op["responses"]["401"] = {
            "description": "missing, invalid or expired token",
            "content": {"application/json": {"schema": _ref(rest.ErrorBody)}},
        }
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query_param(name: str, default: int) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": "integer", "default": default}}


def _cursor_param() -> dict[str, Any]:
    return {
        "name": "cursor",
        "in": "query",
        "description": "next_cursor of the previous page",
        "schema": {"type": "string"},
    }


@cache
def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    cid = _path_param("conversation_id")
    uid = _path_param("user_id")
    seq = {"name": "seq", "in": "path", "required": True, "schema": {"type": "integer"}}
    bad = None
    return {
        "openapi": "3.1.0",
        "info": {"title": "RealChat API", "version": "v1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "paths": {
            "/v1/users": {
                "post": _op(
                    "Create an account",
                    {
                        201: ("created", rest.UserOut),
                        409: ("username_taken", bad),
                        422: ("invalid username or password", bad),
                    },
                    rest.Credentials,
                    auth=False,
                )
            },
            "/v1/tokens": {
                "post": _op(
                    "Get an access token",
                    {
                        200: ("token", rest.TokenOut),
                        401: ("wrong credentials", bad),
                        429: ("too many attempts", bad),
                    },
                    rest.Credentials,
                    auth=False,
                ),
                "delete": _op(
                    "Log out: revoke every access token of the caller (all devices)",
                    {204: ("revoked", bad)},
                ),
            },
            "/v1/users/me/password": {
                "put": _op(
                    "Change the password (revokes every access token of the caller)",
                    {
                        204: ("changed", bad),
                        401: ("wrong current password, or token not accepted", bad),
                        422: ("invalid new password", bad),
                        429: ("too many attempts", bad),
                    },
                    rest.PasswordChange,
                )
            },
            "/v1/users/by-username/{username}": {
                "get": _op(
                    "Find a user",
                    {200: ("user", rest.UserOut), 404: ("no such user", bad)},
                    params=[_path_param("username")],
                )
            },
            "/v1/conversations": {
                "post": _op(
                    "Create a conversation (the caller is a member)",
                    {
                        201: ("created", rest.ConversationOut),
                        403: ("blocked: a member cannot be added by the caller", bad),
                        422: ("bad input, unknown_users, too_many_members", bad),
                    },
                    rest.CreateConversation,
                ),
                "get": _op(
                    "The caller's conversations, a page at a time",
                    {200: ("a page", rest.ConversationsOut), 422: ("bad paging", bad)},
                    params=[_query_param("limit", 100), _cursor_param()],
                ),
            },
            "/v1/conversations/{conversation_id}": {
                "patch": _op(
                    "Rename the conversation (any member); members get a conversation_update",
                    {
                        200: ("the conversation", rest.ConversationOut),
                        403: ("not a member", bad),
                        404: ("unknown conversation", bad),
                        422: ("invalid_title", bad),
                    },
                    rest.RenameConversation,
                    params=[cid],
                )
            },
            "/v1/conversations/{conversation_id}/messages/{seq}": {
                "patch": _op(
                    "Edit one's own message (idempotent per client_change_id); version + 1",
                    {
                        200: (
                            "the message as edited (or as a replayed edit left it)",
                            rest.MessageOut,
                        ),
                        403: ("not a member, or not_the_sender", bad),
                        404: ("unknown conversation or message", bad),
                        409: ("idempotency_conflict, or message_deleted", bad),
                        422: ("bad input", bad),
                    },
                    rest.EditMessage,
                    params=[cid, seq],
                ),
                "delete": _op(
                    "Delete one's own message: a tombstone at the same seq (idempotent)",
                    {
                        200: ("the tombstone", rest.MessageOut),
                        403: ("not a member, or not_the_sender", bad),
                        404: ("unknown conversation or message", bad),
                    },
                    params=[cid, seq],
                ),
            },
            "/v1/conversations/{conversation_id}/members": {
                "post": _op(
                    "Add members",
                    {
                        200: ("the conversation", rest.ConversationOut),
                        403: ("not a member, or blocked", bad),
                        404: ("unknown conversation", bad),
                        422: ("bad input, unknown_users, too_many_members", bad),
                    },
                    rest.AddMembers,
                    params=[cid],
                )
            },
            "/v1/conversations/{conversation_id}/members/{user_id}": {
                "delete": _op(
                    "Leave (the caller's own id) or, as the creator, remove a member",
                    {
                        204: ("left or removed", bad),
                        403: ("not a member, or not the creator", bad),
                        404: ("unknown conversation or member", bad),
                    },
                    params=[cid, uid],
                )
            },
            "/v1/blocks": {
                "get": _op("Users the caller blocked", {200: ("blocked", rest.BlockedOut)})
            },
            "/v1/blocks/{user_id}": {
                "put": _op(
                    "Block a user: no adding the caller, no presence either way",
                    {204: ("blocked", bad), 404: ("no such user", bad)},
                    params=[uid],
                ),
                "delete": _op("Unblock a user", {204: ("unblocked", bad)}, params=[uid]),
            },
            "/v1/conversations/{conversation_id}/messages": {
                "get": _op(
                    "History, ascending by seq",
                    {
                        200: ("messages", rest.MessagesOut),
                        403: ("not a member", bad),
                        404: ("unknown conversation", bad),
                        422: ("bad paging", bad),
                    },
                    params=[cid, _query_param("after_seq", 0), _query_param("limit", 100)],
                ),
                "post": _op(
                    "Send a message (idempotent per client_msg_id)",
                    {
                        201: ("sent", rest.MessageOut),
                        200: ("replay of an earlier send", rest.MessageOut),
                        403: ("not a member", bad),
                        404: ("unknown conversation", bad),
                        409: ("idempotency_conflict", bad),
                        422: ("bad input", bad),
                        429: ("rate_limited", bad),
                    },
                    rest.SendMessage,
                    params=[cid],
                ),
            },
            "/v1/presence": {
                "get": _op(
                    "Presence of the caller and of users sharing a conversation",
                    {200: ("presence", rest.PresencesOut), 422: ("bad user_ids", bad)},
                    params=[
                        {
                            "name": "user_ids",
                            "in": "query",
                            "required": True,
                            "description": "comma-separated user ids (1-100)",
                            "schema": {"type": "string"},
                        }
                    ],
                )
            },
            **_push_paths(),
        },
    }


def _empty_204(op: dict[str, Any]) -> dict[str, Any]:
    """A 204 answer has no body (`_op` gives every answer one)."""
    if "204" in op["responses"]:
        op["responses"]["204"].pop("content", None)
    return op


def _push_paths() -> dict[str, Any]:
    """Push devices and notification settings (docs/notifications.md)."""
    bad = None
    no_content: dict[int, tuple[str, type[BaseModel] | None]] = {204: ("done, no body", None)}
    cid = _path_param("conversation_id")
    return {
        "/v1/devices": {
            "post": _op(
                "Register this device's push token (again: 200, the same device)",
                {
                    201: ("registered", push.DeviceOut),
                    200: ("already registered", push.DeviceOut),
                    409: ("too_many_devices", bad),
                    422: ("bad platform or token", bad),
                },
                push.RegisterDevice,
            ),
            "get": _op("The caller's push devices", {200: ("list", push.DevicesOut)}),
        },
        "/v1/devices/{device_id}": {
            "delete": _empty_204(
                _op(
                    "Remove a push device",
                    {**no_content, 404: ("device_not_found", bad)},
                    params=[_path_param("device_id")],
                )
            )
        },
        "/v1/notification-settings": {
            "get": _op(
                "Do-not-disturb and muted conversations",
                {200: ("settings", push.NotificationSettingsOut)},
            ),
            "patch": _op(
                "Change do-not-disturb (fields left out keep their value)",
                {200: ("settings", push.NotificationSettingsOut), 422: ("bad input", bad)},
                push.UpdateNotificationSettings,
            ),
        },
        "/v1/notification-settings/muted-conversations/{conversation_id}": {
            "put": _empty_204(
                _op(
                    "Mute a conversation's push notifications",
                    {**no_content, 404: ("conversation_not_found", bad)},
                    params=[cid],
                )
            ),
            "delete": _empty_204(_op("Unmute a conversation", no_content, params=[cid])),
        },
    }
