"""The HTTP transport of the auth service: JSON in and out, errors as
`{"error": {"code", "message"}}`. Shapes are checked here (the contract's
structs, `contract/rest.py`); rules live in `service.py`.

Bad input is always a 400 (not JSON) or a 422 (wrong shape or a broken rule), never a 500;
unknown routes and methods get JSON 404/405 bodies too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import Counter

from realchat.auth.errors import InvalidInput, Unauthorized
from realchat.auth.service import AuthService
from realchat.auth.tokens import InvalidToken, TokenClaims, TokenVerifier
from realchat.contract import rest
from realchat.contract.error_codes import ErrorCode
from realchat.contract.limits import MAX_BODY_BYTES
from realchat.forwarded import client_address, trusted_networks
from realchat.http import (
    bearer_token,
    contract_routes,
    decode_body,
    json_errors,
    json_response,
    observed_requests,
)

T = TypeVar("T")

HTTP_REQUESTS = Counter(
    "realchat_auth_http_requests_total",
    "Auth API requests by route and status",
    ["route", "status"],
)


def _observe(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route=route, status=str(status)).inc()


#: The request metrics (by route template and status).
counted = observed_requests(_observe, traced=False)


async def _body(request: web.Request, body: type[T], shape: str) -> T:
    """The request's body as `body`. The rules (username, password) are the service's: the
    contract's structs only state them for the document."""
    not_an_object = InvalidInput(
        ErrorCode.INVALID_REQUEST, f"the body must be a JSON object {shape}"
    )
    return decode_body(await request.read(), body, not_an_object)


async def _credentials(request: web.Request) -> rest.Credentials:
    return await _body(request, rest.Credentials, '{"username": ..., "password": ...}')


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
        return json_response(rest.User(str(user.user_id), user.username), status=201)

    async def issue_token(self, request: web.Request) -> web.Response:
        body = await _credentials(request)
        address = self._client_address(request)
        issued = await self._service.login(body.username, body.password, address)
        token = rest.Token(issued.token, issued.expires_in)
        return json_response(token, headers={"Cache-Control": "no-store"})

    async def revoke_tokens(self, request: web.Request) -> web.Response:
        """Logout: every token of the user stops working, this one included."""
        await self._service.logout(await self.authenticate(request))
        return web.Response(status=204)

    async def change_password(self, request: web.Request) -> web.Response:
        claims = await self.authenticate(request)
        body = await _body(
            request, rest.PasswordChange, '{"current_password": ..., "new_password": ...}'
        )
        address = self._client_address(request)
        await self._service.change_password(
            claims, body.current_password, body.new_password, address
        )
        return web.Response(status=204)

    async def user_by_username(self, request: web.Request) -> web.Response:
        await self.authenticate(request)
        user = await self._service.find_user(request.match_info["username"])
        return json_response(rest.User(str(user.user_id), user.username))

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
    app = web.Application(middlewares=[counted, json_errors()], client_max_size=MAX_BODY_BYTES)
    app.add_routes(
        contract_routes(
            {
                "create_user": api.register,
                "issue_token": api.issue_token,
                "revoke_tokens": api.revoke_tokens,
                "change_password": api.change_password,
                "user_by_username": api.user_by_username,
            }
        )
    )
    app.router.add_get("/.well-known/jwks.json", api.jwks)
    return app
