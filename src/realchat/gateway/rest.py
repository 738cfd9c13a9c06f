"""The contract's REST API on the public entrypoint: the routes of `contract/routes.py`.

Accounts, tokens and push settings are the auth service's: the gateway forwards those requests
unchanged (with the client's address, for login rate limiting). Everything else needs a bearer
token, verified here with the auth service's public key, and goes to the chat service on the
user's behalf.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

import aiohttp
import structlog
from aiohttp import web

from realchat.auth.tokens import InvalidToken
from realchat.contract import rest
from realchat.contract.error_codes import ErrorCode, invalid
from realchat.contract.limits import MAX_SEQ
from realchat.contract.routes import (
    AFTER_SEQ,
    CONVERSATIONS_LIMIT,
    CURSOR,
    HISTORY_LIMIT,
    PRESENCE_USERS,
    ROUTES,
    IdQuery,
    IntQuery,
    Route,
    Server,
)
from realchat.forwarded import Network, forwarded_for_upstream
from realchat.gateway import metrics
from realchat.gateway.chat_client import ChatCallError, ChatClient
from realchat.gateway.openapi import openapi_document
from realchat.gateway.ratelimit import SendLimiter
from realchat.gateway.sessions import SessionGuard
from realchat.http import (
    Refusal,
    bearer_token,
    contract_routes,
    decode_body,
    json_errors,
    json_response,
    observed_requests,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _observe(route: str, method: str, status: int, seconds: float) -> None:
    metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
    metrics.HTTP_DURATION.labels(route).observe(seconds)


#: A server span and the request metrics (by route template, method and status).
observed = observed_requests(_observe, traced=True, unobserved_routes={"/v1/ws"})


def _chat_refusal(exc: Exception) -> Refusal | None:
    if isinstance(exc, ChatCallError):
        return Refusal(exc.http_status, exc.code, exc.message)
    return None


#: Every error leaves as `{"error": {"code", "message"}}`, the chat service's refusals too.
errors_as_json = json_errors(_chat_refusal)

_NOT_AN_OBJECT = Refusal(400, ErrorCode.INVALID_JSON, "the body must be a JSON object")


async def parse_body(request: web.Request, body: type[T]) -> T:
    return decode_body(await request.read(), body, _NOT_AN_OBJECT)


def _uuid_or(value: str, missing: Refusal) -> str:
    """`value` as a canonical UUID; a path id that is not one names nothing (`missing`)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise missing from None


def conversation_id_of(request: web.Request) -> str:
    no_such = Refusal(404, ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation")
    return _uuid_or(request.match_info["conversation_id"], no_such)


def _user_id_of(request: web.Request, missing: Refusal) -> str:
    _uuid_or(request.match_info["user_id"], missing)
    return request.match_info["user_id"]


_NO_USER = Refusal(404, ErrorCode.USER_NOT_FOUND, "no such user")
_NO_MEMBER = Refusal(
    404, ErrorCode.MEMBER_NOT_FOUND, "this user is not a member of the conversation"
)


def _seq_of(request: web.Request) -> int:
    """A message's seq in a path: a positive int64, or there is no such message."""
    value = request.match_info["seq"]
    digits = value.isascii() and value.isdigit() and len(value) <= len(str(MAX_SEQ))
    if not digits or not 1 <= int(value) <= MAX_SEQ:
        raise Refusal(
            404, ErrorCode.MESSAGE_NOT_FOUND, "no message with this seq in the conversation"
        )
    return int(value)


def int_query(request: web.Request, query: IntQuery) -> int:
    """The declared integer parameter, its default when left out."""
    value = request.query.get(query.name)
    if value is None:
        return query.default
    try:
        number = int(value)
    except ValueError:
        raise Refusal(422, invalid(query.name), f"{query.name} must be an integer") from None
    if not query.minimum <= number <= query.maximum:
        raise Refusal(
            422,
            invalid(query.name),
            f"{query.name} must be {_bounds(query.minimum, query.maximum)}",
        )
    return number


def _bounds(minimum: int, maximum: int) -> str:
    return f">= {minimum}" if maximum >= MAX_SEQ else f"{minimum}-{maximum}"


def ids_query(request: web.Request, query: IdQuery) -> list[str]:
    """The declared ids (comma-separated); none if left out and not required. Whether each is
    a UUID the chat service checks (`invalid_user_id`)."""
    ids = [u.strip() for u in request.query.get(query.name, "").split(",") if u.strip()]
    if query.required and not ids:
        raise Refusal(422, invalid(query.name), f"{query.name}: a comma-separated list of ids")
    if len(ids) > query.most:
        raise Refusal(422, invalid(query.name), f"{query.name}: at most {query.most} ids")
    return ids


def _cursor(request: web.Request) -> str:
    """The page to list from: "" for the first, else a `next_cursor` (a conversation id)."""
    refused = Refusal(
        422, ErrorCode.INVALID_CURSOR, "cursor must be a next_cursor of this endpoint"
    )
    return "".join(_uuid_or(c, refused) for c in ids_query(request, CURSOR))


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
        """Every route of the contract: the gateway's to its handler (`_<name>`), the auth
        service's forwarded there."""
        return contract_routes({r.name: self._handler(r) for r in ROUTES})

    def _handler(self, route: Route) -> Handler:
        if route.server is Server.AUTH:
            return self._forward_to_auth
        handler: Handler = getattr(self, f"_{route.name}")
        return handler

    async def _user(self, request: web.Request) -> uuid.UUID:
        token = bearer_token(request)
        if token is None:
            raise Refusal(
                401, ErrorCode.UNAUTHORIZED, "Authorization: Bearer <access_token> required"
            )
        try:
            return (await self._guard.admit(token)).user_id
        except InvalidToken as exc:
            raise Refusal(401, ErrorCode.UNAUTHORIZED, str(exc)) from None

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
            raise Refusal(
                503, ErrorCode.AUTH_UNAVAILABLE, "the auth service is unavailable"
            ) from None

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    async def _create_conversation(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        body = await parse_body(request, rest.CreateConversation)
        created = await self._chat.create_conversation(user, body.member_ids, body.title or "")
        return json_response(created, status=201)

    async def _list_conversations(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        limit = int_query(request, CONVERSATIONS_LIMIT)
        page, following = await self._chat.conversations_page(user, limit, _cursor(request))
        return json_response(rest.ConversationsPage(page, following or None))

    async def _remove_member(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = conversation_id_of(request)
        member = _user_id_of(request, _NO_MEMBER)
        await self._chat.remove_member(user, conversation_id, member)
        return web.Response(status=204)

    async def _list_blocked(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        return json_response(rest.Blocked(await self._chat.blocked(user)))

    async def _block(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        await self._chat.block(user, _user_id_of(request, _NO_USER))
        return web.Response(status=204)

    async def _unblock(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        await self._chat.unblock(user, _user_id_of(request, _NO_USER))
        return web.Response(status=204)

    async def _add_members(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = conversation_id_of(request)
        body = await parse_body(request, rest.AddMembers)
        return json_response(await self._chat.add_members(user, conversation_id, body.user_ids))

    async def _history(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = conversation_id_of(request)
        after_seq = int_query(request, AFTER_SEQ)
        limit = int_query(request, HISTORY_LIMIT)
        messages, last_seq = await self._chat.history(user, conversation_id, after_seq, limit)
        return json_response(rest.HistoryPage(messages, last_seq))

    async def _send(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = conversation_id_of(request)
        body = await parse_body(request, rest.SendMessage)
        if not await self._limiter.allow(user):
            raise Refusal(429, ErrorCode.RATE_LIMITED, "too many messages; slow down")
        sent = await self._chat.send(user, conversation_id, body.client_msg_id, body.content)
        return json_response(sent.message, status=201 if sent.created else 200)

    async def _rename(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = conversation_id_of(request)
        body = await parse_body(request, rest.RenameConversation)
        return json_response(await self._chat.rename(user, conversation_id, body.title))

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
        asked = ids_query(request, PRESENCE_USERS)
        return json_response(rest.Presences(await self._chat.presence(user, asked)))
