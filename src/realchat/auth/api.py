"""The HTTP transport of the auth service: JSON in and out, errors as
`{"error": {"code", "message"}}`. Shapes are checked here (pydantic); rules live in `service.py`.

Bad input is always a 400 (not JSON) or a 422 (wrong shape or a broken rule), never a 500;
unknown routes and methods get JSON 404/405 bodies too.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, ValidationError

from realchat.auth.errors import AuthError, BadRequest, InvalidInput, Unauthorized
from realchat.auth.service import AuthService
from realchat.auth.tokens import InvalidToken, TokenClaims, TokenVerifier
from realchat.forwarded import client_address, trusted_networks
from realchat.http import bearer_token, error_response, http_error_response, observed_requests

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)

#: Credentials are tiny; anything bigger is refused before it is parsed.
MAX_BODY_BYTES = 64 * 1024


class Credentials(BaseModel):
    """The body of `POST /v1/users` and `POST /v1/tokens`. Strict: a number is not a string.
    Unknown fields are ignored, so clients may send more in later versions."""

    model_config = ConfigDict(strict=True, extra="ignore")

    username: str
    password: str


class PasswordChange(BaseModel):
    """The body of `PUT /v1/users/me/password`."""

    model_config = ConfigDict(strict=True, extra="ignore")

    current_password: str
    new_password: str


HTTP_REQUESTS = Counter(
    "realchat_auth_http_requests_total",
    "Auth API requests by route and status",
    ["route", "status"],
)


def _observe(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route=route, status=str(status)).inc()


#: The request metrics (by route template and status).
counted = observed_requests(_observe, traced=False)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as the contract's JSON body, whoever raised it."""
    try:
        return await handler(request)
    except AuthError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_error_response(exc)
    except Exception:
        log.exception("unhandled error", method=request.method, path=request.path)
        return error_response(500, "internal", "internal error")


async def _body(request: web.Request, model: type[M], shape: str) -> M:
    body = await request.read()
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("invalid_json", "the body must be a JSON object") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid_input(exc, model, shape) from None


async def _credentials(request: web.Request) -> Credentials:
    return await _body(request, Credentials, '{"username": ..., "password": ...}')


def _invalid_input(exc: ValidationError, model: type[BaseModel], shape: str) -> InvalidInput:
    """Name the first offending field in the code (`invalid_username`, ...)."""
    first = exc.errors()[0]
    field = first["loc"][0] if first["loc"] else None
    if field in model.model_fields:
        return InvalidInput(f"invalid_{field}", f"{field}: {first['msg']}")
    return InvalidInput("invalid_request", f"the body must be a JSON object {shape}")


class AuthApi:
    def __init__(
        self,
        service: AuthService,
        verifier: TokenVerifier,
        jwks: Mapping[str, Any],
        trusted_proxies: Collection[str] = (),
    ) -> None:
        self._service = service
        self._verifier = verifier
        self._jwks = dict(jwks)
        self._trusted = trusted_networks(trusted_proxies)

    def _client_address(self, request: web.Request) -> str | None:
        forwarded = request.headers.get("X-Forwarded-For", "")
        return client_address(request.remote, forwarded, self._trusted)

    async def register(self, request: web.Request) -> web.Response:
        body = await _credentials(request)
        address = self._client_address(request)
        user = await self._service.register(body.username, body.password, address)
        return web.json_response(
            {"user_id": str(user.user_id), "username": user.username}, status=201
        )

    async def issue_token(self, request: web.Request) -> web.Response:
        body = await _credentials(request)
        address = self._client_address(request)
        issued = await self._service.login(body.username, body.password, address)
        return web.json_response(
            {"access_token": issued.token, "token_type": "bearer", "expires_in": issued.expires_in},
            headers={"Cache-Control": "no-store"},
        )

    async def revoke_tokens(self, request: web.Request) -> web.Response:
        """Logout: every token of the user stops working, this one included."""
        await self._service.logout(await self.authenticate(request))
        return web.Response(status=204)

    async def change_password(self, request: web.Request) -> web.Response:
        claims = await self.authenticate(request)
        body = await _body(
            request, PasswordChange, '{"current_password": ..., "new_password": ...}'
        )
        address = self._client_address(request)
        await self._service.change_password(
            claims, body.current_password, body.new_password, address
        )
        return web.Response(status=204)

    async def user_by_username(self, request: web.Request) -> web.Response:
        await self.authenticate(request)
        user = await self._service.find_user(request.match_info["username"])
        return web.json_response({"user_id": str(user.user_id), "username": user.username})

    async def jwks(self, _: web.Request) -> web.Response:
        return web.json_response(self._jwks, headers={"Cache-Control": "public, max-age=300"})

    async def authenticate(self, request: web.Request) -> TokenClaims:
        """The claims of the request's access token: signed, unexpired and not revoked."""
        token = bearer_token(request)
        if token is None:
            raise Unauthorized("Authorization: Bearer <access_token> required")
        try:
            claims = self._verifier.claims(token)
        except InvalidToken as exc:
            raise Unauthorized(f"access token not accepted ({exc.reason})") from None
        await self._service.check_current(claims)
        return claims


def create_app(api: AuthApi) -> web.Application:
    app = web.Application(middlewares=[counted, json_errors], client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/v1/users", api.register)
    app.router.add_post("/v1/tokens", api.issue_token)
    app.router.add_delete("/v1/tokens", api.revoke_tokens)
    app.router.add_put("/v1/users/me/password", api.change_password)
    app.router.add_get("/v1/users/by-username/{username}", api.user_by_username)
    app.router.add_get("/.well-known/jwks.json", api.jwks)
    return app
