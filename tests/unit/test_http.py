"""The HTTP pieces the gateway and the auth service share."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from realchat.http import bearer_token, error_response, http_error_response


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
