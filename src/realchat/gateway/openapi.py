"""The OpenAPI 3.1 document of the REST API, generated from the contract's route declarations
(`contract/routes.py`) and bodies (`contract/rest.py`, `contract/push.py`): what is declared
there is what is served, and what the document says."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import msgspec

from realchat.contract import rest
from realchat.contract.error_codes import ErrorCode
from realchat.contract.routes import (
    OPENAPI,
    PATH_PARAMETERS,
    ROUTES,
    IdQuery,
    Query,
    Reply,
    Route,
    refused,
)

_REF = "#/components/schemas/{name}"

#: What every operation may answer besides its own replies (see `contract/routes.py`).
_UNAUTHORIZED = refused(ErrorCode.UNAUTHORIZED, why="a missing, invalid or expired token")
_BAD_BODY = {
    400: refused(ErrorCode.INVALID_JSON, why="the body is not a JSON object"),
    413: refused(ErrorCode.REQUEST_TOO_LARGE),
    422: Reply("`invalid_<field>`: a field of the body breaks a rule"),
}
_BAD_QUERY = Reply("`invalid_<parameter>`: a query parameter breaks a rule")
#: What the HTTP server answers, before any route, to a request it cannot read (a request line
#: or a header longer than it reads): plain text, not the error body.
_UNREADABLE = Reply("a request line or header longer than the server reads (plain text)")
_UNAVAILABLE = refused(
    ErrorCode.CHAT_UNAVAILABLE,
    ErrorCode.AUTH_UNAVAILABLE,
    ErrorCode.AUTH_BUSY,
    why="a service behind the gateway is unavailable (Retry-After says when to retry)",
)


def _ref(body: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=body.__name__)}


def _reply(status: int, reply: Reply) -> dict[str, Any]:
    entry: dict[str, Any] = {"description": reply.description}
    if status == 204:
        return entry
    if reply.body is not None:
        schema: dict[str, Any] = _ref(reply.body)
    elif status >= 400:
        schema = _ref(rest.ErrorBody)
    else:
        schema = {"type": "object"}
    entry["content"] = {"application/json": {"schema": schema}}
    if status == 400:
        entry["content"]["text/plain"] = {"schema": {"type": "string"}}
    if status == 503:
        entry["headers"] = {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}}
    return entry


def _replies(route: Route) -> dict[int, Reply]:
    replies: dict[int, Reply] = {}
    if not route.public:
        replies[401] = _UNAUTHORIZED
    if route.body is not None:
        replies.update(_BAD_BODY)
    if route.query:
        replies[422] = _BAD_QUERY
    replies.update(route.replies)
    replies.setdefault(400, _UNREADABLE)
    if route is not OPENAPI:
        replies.setdefault(503, _UNAVAILABLE)
    return replies


def _query_parameter(query: Query) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": query.name, "in": "query", "schema": query.schema()}
    if isinstance(query, IdQuery):
        parameter["required"] = query.required
        if query.most > 1:
            parameter.update(style="form", explode=False)
    if query.description:
        parameter["description"] = query.description
    return parameter


def _parameters(route: Route) -> list[dict[str, Any]]:
    path = [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS[name]}
        for name in re.findall(r"{([^}]+)}", route.path)
    ]
    return path + [_query_parameter(q) for q in route.query]


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": route.name, "summary": route.summary}
    if parameters := _parameters(route):
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.body)}},
        }
    if not route.public:
        operation["security"] = [{"bearer": []}]
    operation["responses"] = {
        str(status): _reply(status, reply) for status, reply in sorted(_replies(route).items())
    }
    return operation


def _bodies() -> list[type]:
    found: set[type] = {rest.ErrorBody}
    for route in ROUTES:
        found.update(r.body for r in route.replies.values() if r.body is not None)
        if route.body is not None:
            found.add(route.body)
    return sorted(found, key=lambda body: body.__name__)


@cache
def openapi_document() -> dict[str, Any]:
    _, schemas = msgspec.json.schema_components(_bodies(), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "RealChat API", "version": "v1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "paths": paths,
    }
