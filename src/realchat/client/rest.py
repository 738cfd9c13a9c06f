"""The REST half of the public API (contract api-v1), typed.

Each call is one HTTP request: no retries here (a REST send is the application's to retry, with
the same `client_msg_id`), except one: with a renewable token (`tokens`), a 401 renews the token
and repeats the request once. Errors: `Unauthorized` for 401, `ApiError` for any other error
status (with the contract's `code`); network failures surface as aiohttp's `ClientError` or
`TimeoutError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec

from realchat.client.errors import ApiError, Unauthorized
from realchat.contract import push, rest
from realchat.contract.frames import Message
from realchat.contract.limits import (
    DEFAULT_CONVERSATIONS_PAGE,
    DEFAULT_HISTORY_LIMIT,
    MAX_CONVERSATIONS_PAGE,
)
from realchat.contract.push import Device, NotificationSettings
from realchat.contract.rest import Conversation, ConversationsPage, HistoryPage, Token, User

__all__ = [
    "Conversation",
    "ConversationsPage",
    "Device",
    "HistoryPage",
    "NotificationSettings",
    "RestApi",
    "Token",
    "User",
]


class _NoContent(msgspec.Struct, frozen=True):
    """What a 204 answer decodes to."""


T = TypeVar("T")


class Tokens(Protocol):
    """Where the REST client gets its token (`tokens.TokenSource`)."""

    async def current(self) -> str: ...

    async def renew_after_refusal(self, refused: str) -> bool: ...


_error_decoder = msgspec.json.Decoder(rest.ErrorBody)


class RestApi:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        tokens: Tokens | None = None,
    ) -> None:
        """`token`: a fixed access token; `tokens`: a renewable one (takes precedence)."""
        self.base_url = base_url.rstrip("/")
        self.access_token = token
        self._tokens = tokens
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    # -- accounts ----------------------------------------------------------------------------

    async def register(self, username: str, password: str) -> User:
        body = rest.Credentials(username, password)
        return await self._call("POST", "/v1/users", User, body=body, auth=False)

    async def token(self, username: str, password: str) -> Token:
        body = rest.Credentials(username, password)
        return await self._call("POST", "/v1/tokens", Token, body=body, auth=False)

    async def user_by_username(self, username: str) -> User:
        return await self._call("GET", f"/v1/users/by-username/{quote(username, safe='')}", User)

    async def logout(self) -> None:
        """Revoke every access token of the user (every device's session ends)."""
        await self._call("DELETE", "/v1/tokens", None, retry=False)

    async def change_password(self, current_password: str, new_password: str) -> None:
        """Set a new password; every access token of the user is revoked."""
        body = rest.PasswordChange(current_password, new_password)
        await self._call("PUT", "/v1/users/me/password", None, body=body, retry=False)

    # -- conversations -----------------------------------------------------------------------

    async def create_conversation(
        self, member_ids: list[str], title: str | None = None
    ) -> Conversation:
        body = rest.CreateConversation(member_ids, title)
        return await self._call("POST", "/v1/conversations", Conversation, body=body)

    async def conversations_page(
        self, cursor: str | None = None, limit: int = DEFAULT_CONVERSATIONS_PAGE
    ) -> ConversationsPage:
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        return await self._call("GET", "/v1/conversations", ConversationsPage, params=params)

    async def conversations(self) -> list[Conversation]:
        """All of the user's conversations, page after page."""
        found: list[Conversation] = []
        cursor: str | None = None
        while True:
            page = await self.conversations_page(cursor, limit=MAX_CONVERSATIONS_PAGE)
            found.extend(page.conversations)
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    async def remove_member(self, conversation_id: str, user_id: str) -> None:
        """Leave (`user_id` is the user's own) or, as the creator, remove a member."""
        path = (
            f"/v1/conversations/{quote(conversation_id, safe='')}/members/{quote(user_id, safe='')}"
        )
        await self._call("DELETE", path, None)

    async def block(self, user_id: str) -> None:
        await self._call("PUT", f"/v1/blocks/{quote(user_id, safe='')}", None)

    async def unblock(self, user_id: str) -> None:
        await self._call("DELETE", f"/v1/blocks/{quote(user_id, safe='')}", None)

    async def blocked(self) -> list[str]:
        return (await self._call("GET", "/v1/blocks", rest.Blocked)).user_ids

    async def add_members(self, conversation_id: str, user_ids: list[str]) -> Conversation:
        path = f"/v1/conversations/{quote(conversation_id, safe='')}/members"
        return await self._call("POST", path, Conversation, body=rest.AddMembers(user_ids))

    async def rename(self, conversation_id: str, title: str) -> Conversation:
        path = f"/v1/conversations/{quote(conversation_id, safe='')}"
        return await self._call("PATCH", path, Conversation, body=rest.RenameConversation(title))

    async def edit_message(
        self, conversation_id: str, seq: int, content: str, client_change_id: str
    ) -> Message:
        path = f"/v1/conversations/{quote(conversation_id, safe='')}/messages/{seq}"
        body = rest.EditMessage(client_change_id, content)
        return await self._call("PATCH", path, Message, body=body)

    async def delete_message(self, conversation_id: str, seq: int) -> Message:
        path = f"/v1/conversations/{quote(conversation_id, safe='')}/messages/{seq}"
        return await self._call("DELETE", path, Message)

    async def history(
        self, conversation_id: str, after_seq: int = 0, limit: int = DEFAULT_HISTORY_LIMIT
    ) -> HistoryPage:
        path = f"/v1/conversations/{quote(conversation_id, safe='')}/messages"
        params = {"after_seq": str(after_seq), "limit": str(limit)}
        return await self._call("GET", path, HistoryPage, params=params)

    # -- push notifications ------------------------------------------------------------------

    async def register_device(self, platform: str, token: str) -> Device:
        """`platform`: "apns", "fcm" or "webpush"; registering a token again is harmless."""
        body = push.RegisterDevice(platform, token)  # type: ignore[arg-type]  # checked there
        return await self._call("POST", "/v1/devices", Device, body=body)

    async def devices(self) -> list[Device]:
        return (await self._call("GET", "/v1/devices", push.Devices)).devices

    async def unregister_device(self, device_id: str) -> None:
        await self._call("DELETE", f"/v1/devices/{quote(device_id, safe='')}", _NoContent)

    async def notification_settings(self) -> NotificationSettings:
        return await self._call("GET", "/v1/notification-settings", NotificationSettings)

    async def set_do_not_disturb(self, on: bool) -> NotificationSettings:
        body = push.UpdateNotificationSettings(on)
        return await self._call(
            "PATCH", "/v1/notification-settings", NotificationSettings, body=body
        )

    async def set_muted(self, conversation_id: str, muted: bool) -> None:
        path = f"/v1/notification-settings/muted-conversations/{quote(conversation_id, safe='')}"
        await self._call("PUT" if muted else "DELETE", path, _NoContent)

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        result: type[T] | None,
        *,
        body: object = None,
        params: Mapping[str, str] | None = None,
        auth: bool = True,
        retry: bool = True,
    ) -> T:
        """`result` None: the reply has no body (204). `retry`: on a 401, renew the token and
        try once more (not for calls whose 401 means the token was just revoked)."""
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if body is not None:
            data = msgspec.json.encode(body)
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if auth:
                headers["Authorization"] = f"Bearer {await self._token()}"
            try:
                return await self._request(method, path, result, data, params, headers)
            except Unauthorized:
                token = headers.get("Authorization", "").removeprefix("Bearer ")
                if not auth or not retry or attempt == 2 or not await self._renew(token):
                    raise
        raise AssertionError("unreachable")

    async def _token(self) -> str:
        if self._tokens is not None:
            self.access_token = await self._tokens.current()
        if self.access_token is None:
            raise Unauthorized("no access token: log in first")
        return self.access_token

    async def _renew(self, refused: str) -> bool:
        return self._tokens is not None and await self._tokens.renew_after_refusal(refused)

    async def _request(
        self,
        method: str,
        path: str,
        result: type[T] | None,
        data: bytes | None,
        params: Mapping[str, str] | None,
        headers: dict[str, str],
    ) -> T:
        async with self._http.request(
            method,
            self.base_url + path,
            data=data,
            params=params,
            headers=headers,
            timeout=self._timeout,
        ) as response:
            payload = await response.read()
            if response.status >= 400:
                raise _error(response.status, payload)
            if response.status == 204:
                payload = b"{}"
        if result is None:
            return None  # type: ignore[return-value]
        return msgspec.json.decode(payload, type=result)


def _error(status: int, payload: bytes) -> ApiError | Unauthorized:
    try:
        detail = _error_decoder.decode(payload).error
        code, message = detail.code, detail.message
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        code, message = f"http_{status}", payload[:200].decode(errors="replace")
    if status == 401:
        return Unauthorized(message, status=status, code=code)
    return ApiError(status, code, message)
