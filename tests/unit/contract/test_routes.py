"""The REST routes are declared once (`contract/routes.py`): the gateway serves each of them and
the OpenAPI document, generated from them, states the contract's real limits and every status an
operation can answer."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from realchat.auth.api import AuthApi, create_app
from realchat.contract import limits
from realchat.contract.error_codes import ErrorCode, invalid
from realchat.contract.routes import ROUTES, Route, Server
from realchat.gateway.openapi import openapi_document
from realchat.gateway.rest import RestApi
from realchat.notifier.api import PushApi


def operation(method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = openapi_document()["paths"][path][method]
    return found


def parameter(op: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [p for p in op["parameters"] if p["name"] == name]
    return found


def schema(name: str) -> dict[str, Any]:
    found: dict[str, Any] = openapi_document()["components"]["schemas"][name]
    return found


def test_each_route_is_declared_once_and_the_gateway_has_a_handler_for_its_own() -> None:
    assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)
    assert len({r.name for r in ROUTES}) == len(ROUTES)
    for route in ROUTES:
        if route.server is Server.GATEWAY:
            assert callable(getattr(RestApi, f"_{route.name}", None)), route.name


def test_the_document_has_one_operation_per_route() -> None:
    document = openapi_document()
    listed = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert listed == {(r.method, r.path) for r in ROUTES}
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert sorted(ids) == sorted(r.name for r in ROUTES)


def test_the_document_states_the_real_bounds_of_the_query_parameters() -> None:
    history = operation("get", "/v1/conversations/{conversation_id}/messages")
    assert parameter(history, "limit")["schema"] == {
        "type": "integer",
        "default": limits.DEFAULT_HISTORY_LIMIT,
        "minimum": 1,
        "maximum": limits.MAX_HISTORY_LIMIT,
    }
    assert parameter(history, "after_seq")["schema"]["minimum"] == 0
    listing = operation("get", "/v1/conversations")
    assert parameter(listing, "limit")["schema"]["maximum"] == limits.MAX_CONVERSATIONS_PAGE
    assert parameter(listing, "cursor")["schema"]["anyOf"][0]["format"] == "uuid"
    presence = parameter(operation("get", "/v1/presence"), "user_ids")
    assert presence["required"] is True
    assert (presence["style"], presence["explode"]) == ("form", False)
    assert presence["schema"]["minItems"] == 1
    assert presence["schema"]["maxItems"] == limits.MAX_PRESENCE_USERS
    seq = parameter(operation("patch", "/v1/conversations/{conversation_id}/messages/{seq}"), "seq")
    assert (seq["schema"]["minimum"], seq["schema"]["maximum"]) == (1, limits.MAX_SEQ)


def test_the_document_states_the_rules_of_the_bodies() -> None:
    send = schema("SendMessage")["properties"]
    assert send["content"]["maxLength"] == limits.MAX_CONTENT_CHARS
    assert send["client_msg_id"]["maxLength"] == limits.MAX_CLIENT_MSG_ID_CHARS
    members = schema("CreateConversation")["properties"]["member_ids"]
    assert members["items"] == {"type": "string", "format": "uuid"}
    assert schema("AddMembers")["properties"]["user_ids"]["minItems"] == 1
    credentials = schema("Credentials")["properties"]
    assert credentials["username"]["pattern"] == limits.USERNAME_PATTERN
    assert credentials["password"]["maxLength"] == limits.MAX_PASSWORD_CHARS
    token = schema("RegisterDevice")["properties"]["token"]
    assert token["maxLength"] == limits.MAX_PUSH_TOKEN_CHARS


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_an_operation_declares_every_status_it_can_answer(route: Route) -> None:
    statuses = set(operation(route.method.lower(), route.path)["responses"])
    if not route.public:
        assert "401" in statuses
    if route.body is not None:
        assert {"400", "413", "422"} <= statuses
    if route.query:
        assert "422" in statuses
    if route.name != "openapi":
        assert "503" in statuses


def test_every_field_a_client_sends_has_its_error_code() -> None:
    for route in ROUTES:
        fields = [q.name for q in route.query]
        if route.body is not None:
            fields += [f.name for f in msgspec.structs.fields(route.body)]
        for field in fields:
            assert invalid(field) is not ErrorCode.INVALID_REQUEST, (route.name, field)


def test_a_response_body_without_a_reference_is_the_error_body() -> None:
    refused = operation("post", "/v1/conversations")["responses"]["403"]
    assert refused["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert "content" not in operation("delete", "/v1/blocks/{user_id}")["responses"]["204"]


def test_the_auth_service_answers_every_route_the_gateway_forwards_to_it() -> None:
    app = create_app(AuthApi.__new__(AuthApi))
    app.add_routes(PushApi.__new__(PushApi).routes())
    answered = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    forwarded = {(r.method, r.path) for r in ROUTES if r.server is Server.AUTH}
    assert answered - {("GET", "/.well-known/jwks.json")} == forwarded
