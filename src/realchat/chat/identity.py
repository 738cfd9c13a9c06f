"""Who is calling: the acting user comes from authenticated call metadata, never a request field.

Trusted internal callers (the gateway, operator tools) present the shared internal credential
(`authorization: Bearer <internal token>`) and name the user they act for in `x-realchat-user-id`.
User access tokens (JWT, verified with the auth service's public key) plug in as another
`Authenticator`.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from typing import Protocol

from realchat.chat.errors import Unauthenticated

AUTHORIZATION = "authorization"
ACTING_USER = "x-realchat-user-id"


class Authenticator(Protocol):
    def authenticate(self, metadata: Mapping[str, str]) -> uuid.UUID:
        """The acting user, or raise `Unauthenticated`."""
        ...


def bearer_token(metadata: Mapping[str, str]) -> str:
    scheme, _, token = metadata.get(AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("missing_credentials", "authorization: Bearer <token> required")
    return token


class InternalCredential:
    """Accepts calls that carry the shared internal token and an acting user id."""

    def __init__(self, token: str) -> None:
        if len(token) < 16:
            raise ValueError("the internal token must be at least 16 characters")
        self._token = token.encode()

    def authenticate(self, metadata: Mapping[str, str]) -> uuid.UUID:
        presented = bearer_token(metadata).encode()
        if not hmac.compare_digest(presented, self._token):
            raise Unauthenticated("invalid_credentials", "credentials not accepted")
        try:
            return uuid.UUID(metadata.get(ACTING_USER, ""))
        except ValueError:
            raise Unauthenticated(
                "missing_acting_user", f"{ACTING_USER} must name the acting user (a UUID)"
            ) from None


def internal_metadata(token: str, user_id: uuid.UUID) -> tuple[tuple[str, str], ...]:
    """The call metadata a trusted caller sends to act for `user_id`."""
    return ((AUTHORIZATION, f"Bearer {token}"), (ACTING_USER, str(user_id)))
