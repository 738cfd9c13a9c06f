"""The HTTP pieces the gateway and the auth service share."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from realchat.contract import rest
from realchat.contract.error_codes import ErrorCode
from realchat.http import (
    Refusal,
    bearer_token,
    decode_body,
    error_response,
    http_error_response,
    json_errors,
)


def body_of(response: web.Response) -> object:
    assert isinstance(response.body, bytes)
    return json.loads(response.body)


def test_an_error_leaves_as_the_contracts_body() -> None:
    response = error_response(422, "invalid_content", "content: too long")
    assert response.status == 422
    assert body_of(response) == {
        "error": {"code": "invalid_content", "message": "content: too long"}
    }
    assert "Retry-After" not in response.headers


def test_a_503_says_when_to_try_again_unless_told() -> None:
    assert error_response(503, "chat_unavailable", "down").headers["Retry-After"] == "1"
    told = error_response(503, "overloaded", "busy", {"Retry-After": "7"})
    assert told.headers["Retry-After"] == "7"


def test_a_401_names_the_scheme_that_gets_in() -> None:
    """RFC 9110: every 401 carries WWW-Authenticate (the gateway's REST API and auth alike)."""
    refused = error_response(401, "unauthorized", "Authorization: Bearer <access_token> required")
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="realchat"'
    assert "WWW-Authenticate" not in error_response(403, "not_a_member", "no").headers


def test_aiohttps_own_errors_get_their_code_and_keep_allow() -> None:
    refused = http_error_response(web.HTTPMethodNotAllowed("PATCH", ["GET", "POST"]))
    assert refused.status == 405
    assert set(refused.headers["Allow"].split(",")) == {"GET", "POST"}
    assert body_of(refused) == {
        "error": {"code": "method_not_allowed", "message": "Method Not Allowed"}
    }
    missing = http_error_response(web.HTTPNotFound(), "no route for /x")
    assert body_of(missing) == {"error": {"code": "not_found", "message": "no route for /x"}}
    assert body_of(http_error_response(web.HTTPConflict())) == {
        "error": {"code": "http_error", "message": "Conflict"}
    }


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer abc.def", "abc.def"),
        ("Bearer  abc.def ", "abc.def"),
        ("Bearer ", None),
        ("Bearer    ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("abc.def", None),
        (None, None),
    ],
)
def test_the_bearer_token_is_read_from_the_authorization_header(
    header: str | None, token: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    assert bearer_token(make_mocked_request("GET", "/v1/x", headers=headers)) == token


# -- JSON bodies -----------------------------------------------------------------------------------

NOT_AN_OBJECT = Refusal(400, ErrorCode.INVALID_JSON, "the body must be a JSON object")


def refusal_of(raw: bytes, body: type[Any] = rest.SendMessage) -> Refusal:
    with pytest.raises(Refusal) as refused:
        decode_body(raw, body, NOT_AN_OBJECT)
    return refused.value


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"\xff\xfe{}", b"[" * 20_000, b'{"n": ' + b"1" * 5000 + b"}"]
)
def test_a_body_that_is_not_json_is_invalid_json(raw: bytes) -> None:
    refused = refusal_of(raw)
    assert (refused.status, refused.code) == (400, ErrorCode.INVALID_JSON)


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"null", b"7"])
def test_json_that_is_not_an_object_is_what_the_server_says(raw: bytes) -> None:
    assert refusal_of(raw) is NOT_AN_OBJECT


@pytest.mark.parametrize(
    ("body", "code", "message_starts"),
    [
        ({"client_msg_id": 5, "content": "x"}, ErrorCode.INVALID_CLIENT_MSG_ID, "client_msg_id: "),
        ({"content": "x"}, ErrorCode.INVALID_CLIENT_MSG_ID, "client_msg_id: "),
        ({"client_msg_id": "a", "content": ""}, ErrorCode.INVALID_CONTENT, "content: "),
        ({"client_msg_id": "a", "content": "x" * 4001}, ErrorCode.INVALID_CONTENT, "content: "),
    ],
)
def test_a_field_that_breaks_a_rule_is_named_in_the_code_and_the_message(
    body: dict[str, Any], code: ErrorCode, message_starts: str
) -> None:
    refused = refusal_of(json.dumps(body).encode())
    assert (refused.status, refused.code) == (422, code)
    assert refused.message.startswith(message_starts), refused.message


def test_an_item_of_a_list_is_named_by_its_path() -> None:
    refused = refusal_of(b'{"member_ids": ["x", null]}', rest.CreateConversation)
    assert refused.code == ErrorCode.INVALID_MEMBER_IDS
    assert refused.message.startswith("member_ids[1]: "), refused.message


def test_a_valid_body_is_decoded_and_unknown_fields_are_ignored() -> None:
    raw = b'{"client_msg_id": "a", "content": "\\u00e9t\\u00e9", "later": [1]}'
    assert decode_body(raw, rest.SendMessage, NOT_AN_OBJECT) == rest.SendMessage(
        "a", "\u00e9t\u00e9"
    )


# -- the error middleware -------------------------------------------------------------------------


class Unreachable(Exception):  # noqa: N818 - named for what happened
    """What a dependency's client raises; the server's `translate` makes a refusal of it."""


def translate(exc: Exception) -> Refusal | None:
    if isinstance(exc, Unreachable):
        return Refusal(503, ErrorCode.CHAT_UNAVAILABLE, "down")
    return None


async def refuse(request: web.Request) -> web.Response:
    raise Refusal(409, ErrorCode.IDEMPOTENCY_CONFLICT, "used")


async def unreachable(request: web.Request) -> web.Response:
    raise Unreachable


async def bug(request: web.Request) -> web.Response:
    raise KeyError("oops")


async def read(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[json_errors(translate)], client_max_size=1024)
    app.router.add_post("/refuse", refuse)
    app.router.add_get("/unreachable", unreachable)
    app.router.add_get("/bug", bug)
    app.router.add_post("/read", read)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("POST", "/refuse", 409, ErrorCode.IDEMPOTENCY_CONFLICT),
        ("GET", "/unreachable", 503, ErrorCode.CHAT_UNAVAILABLE),
        ("GET", "/bug", 500, ErrorCode.INTERNAL),
        ("GET", "/nowhere", 404, ErrorCode.NOT_FOUND),
        ("GET", "/refuse", 405, ErrorCode.METHOD_NOT_ALLOWED),
    ],
)
async def test_every_failure_leaves_as_the_contracts_error_body(
    client: TestClient[web.Request, web.Application],
    method: str,
    path: str,
    status: int,
    code: ErrorCode,
) -> None:
    async with client.request(method, path) as reply:
        assert reply.status == status
        assert reply.content_type == "application/json"
        body = await reply.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    if status == 405:
        assert reply.headers["Allow"] == "POST"
    if status == 503:
        assert reply.headers["Retry-After"] == "1"


async def test_a_body_above_the_limit_is_request_too_large(
    client: TestClient[web.Request, web.Application],
) -> None:
    async with client.post("/read", data=b"x" * 2048) as reply:
        body = await reply.json()
    assert reply.status == 413
    assert body["error"]["code"] == ErrorCode.REQUEST_TOO_LARGE
    assert "KiB" in body["error"]["message"]
