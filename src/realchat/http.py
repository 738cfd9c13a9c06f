"""What RealChat's HTTP servers share (the gateway's public REST API, the auth service): the
error body, the request metrics and spans, and reading a bearer token.

Every error leaves as `{"error": {"code", "message"}}` (docs/protocol.md), whichever server
answers it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterator, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry.trace import Span, SpanKind

from realchat.observability.tracing import extract, tracer

#: The codes of the errors aiohttp itself raises (no route, wrong method, body too large).
HTTP_ERROR_CODES: Mapping[int, str] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}

#: Told the outcome of each request: route template, method, status, seconds.
RequestObserver = Callable[[str, str, int, float], None]


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The contract's error body. A 503 (a dependency is down) says when to try again, 1 s
    unless `headers` says otherwise: shortly, not at once."""
    response = web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )
    if status == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = "1"
    return response


def http_error_response(exc: web.HTTPException, message: str | None = None) -> web.Response:
    """An error aiohttp raised, as the contract's body (its reason unless `message` is given);
    a 405 keeps its `Allow` header."""
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    code = HTTP_ERROR_CODES.get(exc.status, "http_error")
    return error_response(exc.status, code, message or exc.reason, headers)


def bearer_token(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None if the header is missing or says
    something else."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


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
