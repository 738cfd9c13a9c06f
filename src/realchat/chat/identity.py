"""Who is calling: the acting user comes from authenticated call metadata, never a request field.

Trusted internal callers (the gateway, operator tools) present the shared internal credential
(`authorization: Bearer <internal token>`) and name the user they act for in `x-realchat-user-id`.
Users may also call with their own access token (`authorization: Bearer <JWT>`, verified locally
with the auth service's public key, and refused once revoked: its version must still be the
user's, read from the database); the token names the user, `x-realchat-user-id` is ignored.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from realchat.auth.tokens import InvalidToken, TokenVerifier
from realchat.chat.errors import Unauthenticated
from realchat.chat.rpc import ACTING_USER, AUTHORIZATION
from realchat.contract.error_codes import ErrorCode

#: The user's current token version, None if there is no such user (`auth/revocation.py`).
TokenVersionOf = Callable[[uuid.UUID], Awaitable[int | None]]


class Authenticator(Protocol):
    async def authenticate(self, metadata: Mapping[str, str]) -> uuid.UUID:
        """The acting user, or raise `Unauthenticated`."""
        ...


def bearer_token(metadata: Mapping[str, str]) -> str:
    scheme, _, token = metadata.get(AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(
            ErrorCode.MISSING_CREDENTIALS, "authorization: Bearer <token> required"
        )
    return token


class InternalCredential:
    """Accepts calls that carry the shared internal token and an acting user id."""

    def __init__(self, token: str) -> None:
        if len(token) < 16:
            raise ValueError("the internal token must be at least 16 characters")
        self._token = token.encode()

    def verify(self, metadata: Mapping[str, str]) -> None:
        """The call carries the internal token (calls that act for many users need no more)."""
        presented = bearer_token(metadata).encode()
        if not hmac.compare_digest(presented, self._token):
            raise Unauthenticated(ErrorCode.INVALID_CREDENTIALS, "credentials not accepted")

    async def authenticate(self, metadata: Mapping[str, str]) -> uuid.UUID:
        self.verify(metadata)
        try:
            return uuid.UUID(metadata.get(ACTING_USER, ""))
        except ValueError:
            raise Unauthenticated(
                ErrorCode.MISSING_ACTING_USER, f"{ACTING_USER} must name the acting user (a UUID)"
            ) from None


class TokenAuthenticator:
    """Accepts calls that carry a user's access token (a JWT from the auth service) that was not
    revoked since (when `version_of` is given: the chat service always gives it)."""

    def __init__(self, verifier: TokenVerifier, version_of: TokenVersionOf | None = None) -> None:
        self._verifier = verifier
        self._version_of = version_of

    async def authenticate(self, metadata: Mapping[str, str]) -> uuid.UUID:
        try:
            claims = self._verifier.claims(bearer_token(metadata))
        except InvalidToken as exc:
            raise Unauthenticated(
                ErrorCode.INVALID_CREDENTIALS, f"access token not accepted ({exc.reason})"
            ) from None
        if self._version_of is not None:
            current = await self._version_of(claims.user_id)
            if current is None or claims.version < current:
                raise Unauthenticated(
                    ErrorCode.INVALID_CREDENTIALS, "access token not accepted (revoked)"
                )
        return claims.user_id


class FirstOf:
    """Tries authenticators in order. `invalid_credentials` from one means "not a credential
    I know", so the next one gets a turn; anything else (a user, or a definite error such as a
    valid internal token without `x-realchat-user-id`) is the answer."""

    def __init__(self, *authenticators: Authenticator) -> None:
        if not authenticators:
            raise ValueError("FirstOf needs at least one authenticator")
        self._authenticators = authenticators

    async def authenticate(self, metadata: Mapping[str, str]) -> uuid.UUID:
        refused: Unauthenticated | None = None
        for authenticator in self._authenticators:
            try:
                return await authenticator.authenticate(metadata)
            except Unauthenticated as exc:
                if exc.code != ErrorCode.INVALID_CREDENTIALS:
                    raise
                refused = exc
        assert refused is not None
        raise refused
