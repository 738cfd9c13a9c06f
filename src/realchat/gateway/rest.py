"""The contract's REST API on the public entrypoint.

Accounts and tokens are the auth service's: the gateway forwards those requests unchanged (with
the client's address, for login rate limiting). Everything else needs a bearer token, verified
here with the auth service's public key, and goes to the chat service on the user's behalf.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

import aiohttp
import msgspec
import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from realchat.auth.tokens import InvalidToken
from realchat.chat.v1 import chat_pb2 as pb
from realchat.contract import rest
from realchat.contract.frames import Message
from realchat.forwarded import Network, forwarded_for_upstream
from realchat.gateway import metrics
from realchat.gateway.chat_client import ChatCallError, ChatClient
from realchat.gateway.openapi import openapi_document
from realchat.gateway.ratelimit import SendLimiter
from realchat.gateway.sessions import SessionGuard
from realchat.http import (
    bearer_token,
    error_response,
    http_error_response,
    observed_requests,
    route_of,
)

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_encoder = msgspec.json.Encoder()


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


def _observe(route: str, method: str, status: int, seconds: float) -> None:
    metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
    metrics.HTTP_DURATION.labels(route).observe(seconds)


#: A server span and the request metrics (by route template, method and status).
observed = observed_requests(_observe, traced=True, unobserved_routes={"/v1/ws"})


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as `{"error": {"code", "message"}}`; bugs are 500s, never 400s."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _refused(request, exc.status, exc.code, exc.message)
    except ChatCallError as exc:
        return _refused(request, exc.http_status, exc.code, exc.message)
    except web.HTTPNotFound as exc:
        return http_error_response(exc, f"no route for {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        return http_error_response(exc, f"{request.method} not allowed here")
    except web.HTTPRequestEntityTooLarge as exc:
        return http_error_response(exc, "the body is larger than 64 KiB")


def _refused(request: web.Request, status: int, code: str, message: str) -> web.Response:
    log.info(
        "request refused",
        route=route_of(request),
        method=request.method,
        status=status,
        error_code=code,
        conversation_id=request.match_info.get("conversation_id"),
    )
    return error_response(status, code, message)


async def parse_body(request: web.Request, model: type[M]) -> M:
    try:
        raw = await request.json(loads=json.loads)
    except (ValueError, RecursionError):  # also: nested too deeply, integers too long to read
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        # The code names the top-level field (`invalid_member_ids`, never `..._ids.0`); the
        # message keeps the whole path (`member_ids.0: ...`).
        loc = first["loc"]
        field = str(loc[0]) if loc else "body"
        path = ".".join(str(p) for p in loc) or "body"
        raise ApiError(422, f"invalid_{field}", f"{path}: {first['msg']}") from None


def conversation_id_of(request: web.Request) -> str:
    value = request.match_info["conversation_id"]
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ApiError(404, "conversation_not_found", "no such conversation") from None


def conversation_out(c: pb.Conversation) -> dict[str, Any]:
    return {
        "conversation_id": c.conversation_id,
        "title": c.title or None,
        "member_ids": list(c.member_ids),
        "created_at": c.created_at.ToJsonString(),
        "last_seq": c.last_seq,
        "acked_seq": c.acked_seq,
        "unread_count": c.unread_count,
    }


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _user_id_of(request: web.Request) -> str:
    value = request.match_info["user_id"]
    if not _is_uuid(value):
        raise ApiError(404, "user_not_found", "no such user")
    return value


def _seq_of(request: web.Request) -> int:
    """A message's seq in a path: a positive int64, or there is no such message."""
    value = request.match_info["seq"]
    if not value.isdigit() or not 1 <= int(value) < 2**63:
        raise ApiError(404, "message_not_found", "no message with this seq in the conversation")
    return int(value)


def _int_query(request: web.Request, name: str, default: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(422, f"invalid_{name}", f"{name} must be an integer") from None
    if not -(2**63) <= number < 2**63:  # what the chat service takes (int64)
        raise ApiError(422, f"invalid_{name}", f"{name} is out of range")
    return number


class RestApi:
    def __init__(
        self,
        chat: ChatClient,
        guard: SessionGuard,
        send_limiter: SendLimiter,
        auth_url: str,
        http: aiohttp.ClientSession,
        trusted_proxies: Collection[Network] = (),
    ) -> None:
        self._chat = chat
        self._guard = guard
        self._limiter = send_limiter
        self._auth_url = auth_url.rstrip("/")
        self._http = http
        self._trusted_proxies = tuple(trusted_proxies)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/users", self._forward_to_auth),
            web.post("/v1/tokens", self._forward_to_auth),
            web.delete("/v1/tokens", self._forward_to_auth),
            web.put("/v1/users/me/password", self._forward_to_auth),
            web.get("/v1/users/by-username/{username}", self._forward_to_auth),
            web.get("/v1/openapi.json", self._openapi),
            web.post("/v1/conversations", self._create_conversation),
            web.get("/v1/conversations", self._list_conversations),
            web.post("/v1/conversations/{conversation_id}/members", self._add_members),
            web.delete(
                "/v1/conversations/{conversation_id}/members/{user_id}", self._remove_member
            ),
            web.get("/v1/blocks", self._blocked),
            web.put("/v1/blocks/{user_id}", self._block),
            web.delete("/v1/blocks/{user_id}", self._unblock),
            web.get("/v1/conversations/{conversation_id}/messages", self._history),
            web.post("/v1/conversations/{conversation_id}/messages", self._send),
            web.patch("/v1/conversations/{conversation_id}", self._rename),
            web.patch("/v1/conversations/{conversation_id}/messages/{seq}", self._edit),
            web.delete("/v1/conversations/{conversation_id}/messages/{seq}", self._delete),
            web.get("/v1/presence", self._presence),
            *self._push_routes(),
        ]

    def _push_routes(self) -> list[web.RouteDef]:
        """Push devices and notification settings: the auth service's (realchat.notifier.api)."""
        muted = "/v1/notification-settings/muted-conversations/{conversation_id}"
        return [
            web.route(method, path, self._forward_to_auth)
            for method, path in (
                ("POST", "/v1/devices"),
                ("GET", "/v1/devices"),
                ("DELETE", "/v1/devices/{device_id}"),
                ("GET", "/v1/notification-settings"),
                ("PATCH", "/v1/notification-settings"),
                ("PUT", muted),
                ("DELETE", muted),
            )
        ]

    async def _user(self, request: web.Request) -> uuid.UUID:
        token = bearer_token(request)
        if token is None:
            raise ApiError(401, "unauthorized", "Authorization: Bearer <access_token> required")
        try:
            return (await self._guard.admit(token)).user_id
        except InvalidToken as exc:
            raise ApiError(401, "unauthorized", str(exc)) from None

    async def _forward_to_auth(self, request: web.Request) -> web.Response:
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        # The auth service limits logins and sign-ups per client address: pass on the hops
        # a trusted balancer reported, plus the peer we saw.
        headers["X-Forwarded-For"] = forwarded_for_upstream(
            request.remote, request.headers.get("X-Forwarded-For"), self._trusted_proxies
        )
        try:
            async with self._http.request(
                request.method,
                f"{self._auth_url}{request.rel_url}",
                data=await request.read(),
                headers=headers,
            ) as reply:
                body = await reply.read()
                passed = {k: v for k, v in reply.headers.items() if k in ("Retry-After",)}
                return web.Response(
                    body=body,
                    status=reply.status,
                    content_type=reply.content_type,
                    headers=passed,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("auth service unreachable", error=repr(exc))
            raise ApiError(503, "auth_unavailable", "the auth service is unavailable") from None

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    async def _create_conversation(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        body = await parse_body(request, rest.CreateConversation)
        created = await self._chat.create_conversation(user, body.member_ids, body.title or "")
        return json_response(conversation_out(created), status=201)

    async def _list_conversations(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        limit = _int_query(request, "limit", 100)
        if not 1 <= limit <= 200:
            raise ApiError(422, "invalid_limit", "limit must be 1-200")
        cursor = request.query.get("cursor", "")
        if cursor and not _is_uuid(cursor):
            raise ApiError(422, "invalid_cursor", "cursor must be a next_cursor of this endpoint")
        conversations, following = await self._chat.conversations_page(user, limit, cursor)
        return json_response(
            {
                "conversations": [conversation_out(c) for c in conversations],
                "next_cursor": following or None,
            }
        )

    async def _remove_member(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = conversation_id_of(request)
        member = request.match_info["user_id"]
        if not _is_uuid(member):
            raise ApiError(404, "member_not_found", "this user is not a member of the conversation")
        await self._chat.remove_member(user, conversation_id, member)
        return web.Response(status=204)

    async def _blocked(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        return json_response({"user_ids": await self._chat.blocked(user)})

    async def _block(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        await self._chat.block(user, _user_id_of(request))
        return web.Response(status=204)

    async def _unblock(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        await self._chat.unblock(user, _user_id_of(request))
        return web.Response(status=204)

    async def _add_members(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = conversation_id_of(request)
        body = await parse_body(request, rest.AddMembers)
        updated = await self._chat.add_members(user, conversation_id, body.user_ids)
        return json_response(conversation_out(updated))

    async def _history(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = conversation_id_of(request)
        after_seq = _int_query(request, "after_seq", 0)
        limit = _int_query(request, "limit", 100)
        if not 1 <= limit <= 500:
            raise ApiError(422, "invalid_limit", "limit must be 1-500")
        messages, last_seq = await self._chat.history(user, conversation_id, after_seq, limit)
        return json_response({"messages": messages, "last_seq": last_seq})

    async def _send(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = conversation_id_of(request)
        body = await parse_body(request, rest.SendMessage)
        if not await self._limiter.allow(user):
            raise ApiError(429, "rate_limited", "too many messages; slow down")
        sent = await self._chat.send(user, conversation_id, body.client_msg_id, body.content)
        message: Message = sent.message
        return json_response(message, status=201 if sent.created else 200)

    async def _rename(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = conversation_id_of(request)
        body = await parse_body(request, rest.RenameConversation)
        renamed = await self._chat.rename(user, conversation_id, body.title)
        return json_response(conversation_out(renamed))

    async def _edit(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = conversation_id_of(request)
        seq = _seq_of(request)
        body = await parse_body(request, rest.EditMessage)
        edited = await self._chat.edit(
            user, conversation_id, seq, body.client_change_id, body.content
        )
        return json_response(edited.message)

    async def _delete(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = conversation_id_of(request)
        deleted = await self._chat.delete(user, conversation_id, _seq_of(request))
        return json_response(deleted.message)

    async def _presence(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        asked = [u for u in request.query.get("user_ids", "").split(",") if u.strip()]
        if not asked:
            raise ApiError(422, "invalid_user_ids", "user_ids: a comma-separated list of ids")
        users = await self._chat.presence(user, [u.strip() for u in asked])
        return json_response(
            {
                "users": [
                    {
                        "user_id": p.user_id,
                        "status": p.status,
                        "since": p.since.ToJsonString() if p.HasField("since") else None,
                    }
                    for p in users
                ]
            }
        )
