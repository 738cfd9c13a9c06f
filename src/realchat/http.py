"""What RealChat's HTTP servers share (the gateway's public REST API, the auth service): the
error body and the middleware that makes every failure one, reading a JSON body into a contract
struct, the request metrics and spans, and reading a bearer token.

Every error leaves as `{"error": {"code", "message"}}` (docs/protocol.md), whichever server
answers it.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, TypeVar

import msgspec
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry.trace import Span, SpanKind

from realchat.contract.error_codes import ErrorCode, invalid
from realchat.contract.limits import MAX_BODY_BYTES
from realchat.contract.routes import ROUTES
from realchat.observability.tracing import extract, tracer

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: The codes of the errors aiohttp itself raises (no route, wrong method, body too large).
HTTP_ERROR_CODES: Mapping[int, ErrorCode] = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.REQUEST_TOO_LARGE,
}


class Refusal(Exception):  # noqa: N818 - a verdict on a request, reported to the client
    """A request refused for a reason the caller can act on: its status, the contract's error
    code and a message safe to show them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def headers(self) -> dict[str, str]:
        """Extra response headers this refusal needs (e.g. Retry-After)."""
        return {}


#: Told the outcome of each request: route template, method, status, seconds.
RequestObserver = Callable[[str, str, int, float], None]


_encoder = msgspec.json.Encoder()


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`body` (a contract struct, or plain data) as a JSON response."""
    return web.Response(
        body=_encoder.encode(body), status=status, headers=headers, content_type="application/json"
    )


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The contract's error body. A 503 (a dependency is down) says when to try again, 1 s
    unless `headers` says otherwise: shortly, not at once. A 401 names the scheme that gets in
    (RFC 9110 requires `WWW-Authenticate` on every 401)."""
    response = web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )
    if status == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = "1"
    if status == 401 and "WWW-Authenticate" not in response.headers:
        response.headers["WWW-Authenticate"] = 'Bearer realm="realchat"'
    return response


def http_error_response(exc: web.HTTPException, message: str | None = None) -> web.Response:
    """An error aiohttp raised, as the contract's body (its reason unless `message` is given);
    a 405 keeps its `Allow` header."""
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    code = HTTP_ERROR_CODES.get(exc.status, ErrorCode.HTTP_ERROR)
    return error_response(exc.status, code, message or exc.reason, headers)


def _http_error_message(request: web.Request, exc: web.HTTPException) -> str | None:
    if exc.status == 404:
        return f"no route for {request.path}"
    if exc.status == 405:
        return f"{request.method} not allowed here"
    if exc.status == 413:
        return f"the body is larger than {MAX_BODY_BYTES // 1024} KiB"
    return None


def _no_translation(exc: Exception) -> Refusal | None:
    return None


def json_errors(translate: Callable[[Exception], Refusal | None] = _no_translation) -> Middleware:
    """A middleware that turns every failure into the contract's error body: a `Refusal`, an
    error aiohttp raised (no route, wrong method, body too large), an exception `translate`
    makes a refusal of (a dependency's), and anything else as a logged 500."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refusal as refused:
            return _refused(request, refused)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return http_error_response(exc, _http_error_message(request, exc))
        except Exception as exc:
            translated = translate(exc)
            if translated is not None:
                return _refused(request, translated)
            log.exception("unhandled error", method=request.method, path=request.path)
            return error_response(500, ErrorCode.INTERNAL, "internal error")

    return errors


def _refused(request: web.Request, refusal: Refusal) -> web.Response:
    log.info(
        "request refused",
        route=route_of(request),
        method=request.method,
        status=refusal.status,
        error_code=refusal.code,
        conversation_id=request.match_info.get("conversation_id"),
    )
    return error_response(refusal.status, refusal.code, refusal.message, refusal.headers())


# -- JSON bodies ---------------------------------------------------------------------------------

_AT_FIELD = re.compile(r" - at `\$\.([A-Za-z_]\w*)")
_MISSING_FIELD = re.compile(r"missing required field `([A-Za-z_]\w*)`")


def decode_body(raw: bytes, body: type[T], not_an_object: Refusal) -> T:
    """`raw` as the contract struct `body`: 400 `invalid_json` unless it is JSON (UTF-8),
    `not_an_object` unless that is an object, and 422 `invalid_<field>` naming the first field
    that breaks a rule (the message keeps the whole path: `member_ids[0]: ...`). Unknown fields
    are ignored, so clients may send more in later versions."""
    try:
        data: Any = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # also: nested too deeply, integers too long to read
        raise Refusal(400, ErrorCode.INVALID_JSON, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise not_an_object
    try:
        return msgspec.convert(data, body)
    except msgspec.ValidationError as exc:
        raise _invalid_field(str(exc)) from None


def _invalid_field(text: str) -> Refusal:
    detail, _, where = text.partition(" - at `$.")
    at = _AT_FIELD.search(text) or _MISSING_FIELD.search(text)
    if at is None:
        return Refusal(422, ErrorCode.INVALID_REQUEST, text)
    path = where.rstrip("`") if where else at.group(1)
    return Refusal(422, invalid(at.group(1)), f"{path}: {detail}")


def bearer_token(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None if the header is missing or says
    something else."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def contract_routes(handlers: Mapping[str, Handler]) -> list[web.RouteDef]:
    """The contract's routes (`contract/routes.py`) named in `handlers`, each to its handler:
    a server declares which routes it answers, never their paths."""
    declared = {route.name: route for route in ROUTES}
    return [
        web.route(declared[name].method, declared[name].path, handler)
        for name, handler in handlers.items()
    ]


def route_of(request: web.Request) -> str:
    """The route template (`/v1/conversations/{conversation_id}/messages`), never the raw path:
    a label with a bounded set of values."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def observed_requests(
    observe: RequestObserver, *, traced: bool, unobserved_routes: Collection[str] = ()
) -> Middleware:
    """A middleware that tells `observe` every request's outcome (a handler's exception counts
    as 500) and, if `traced`, runs it in a server span continuing the caller's trace. Requests
    to `unobserved_routes` are left alone (a WebSocket: a session, not a request)."""

    @web.middleware
    async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_of(request)
        if route in unobserved_routes:
            return await handler(request)
        started = time.perf_counter()
        status = 500
        with _server_span(request, route, traced) as span:
            try:
                response = await handler(request)
                status = response.status
                return response
            finally:
                if span is not None:
                    span.set_attribute("http.response.status_code", status)
                observe(route, request.method, status, time.perf_counter() - started)

    return observed


@contextlib.contextmanager
def _server_span(request: web.Request, route: str, traced: bool) -> Iterator[Span | None]:
    if not traced:
        yield None
        return
    with tracer().start_as_current_span(
        f"{request.method} {route}",
        context=extract(dict(request.headers)),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": route},
    ) as span:
        yield span
