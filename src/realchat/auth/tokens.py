"""Access tokens: EdDSA (Ed25519) JWTs.

Asymmetric on purpose: only the auth service holds the private key; the gateway and the chat
service verify tokens locally with the public key (a file, or the JWKS), so no request needs a
round trip to the auth service and no verifier can mint tokens.

Claims: `sub` (user UUID), `iat`, `exp`, `iss`, `aud`, `jti`, `ver` (the user's token version
at issue: logout and a password change bump it, revoking every older token, see
`revocation.py`); header `kid` names the key, so keys can be rotated by publishing the next one
before signing with it.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from realchat.config import AuthSettings

ALGORITHM = "EdDSA"
_REQUIRED_CLAIMS = ["sub", "iat", "exp", "iss", "aud", "jti"]


class InvalidToken(Exception):  # noqa: N818 - reads best at the call site: `except InvalidToken`
    """The token must not be accepted; `reason` is a stable short word for logs and tests:
    malformed, unknown_kid, bad_signature, expired, not_yet_valid, wrong_audience,
    wrong_issuer, missing_claim, bad_subject."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says."""

    user_id: uuid.UUID
    #: The user's token version when it was issued (0 for tokens without `ver`).
    version: int
    #: Unix time after which it is refused.
    expires_at: float


class KeyConfigError(RuntimeError):
    """A signing or verification key is not configured or cannot be used; says which setting."""


class TokenIssuer:
    """Signs access tokens for users (only the auth service has one)."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        key_id: str,
        issuer: str,
        audience: str,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = private_key
        self.key_id = key_id
        self._issuer = issuer
        self._audience = audience
        self._ttl_s = ttl_s
        self._clock = clock

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def issue(self, user_id: uuid.UUID, version: int = 0) -> tuple[str, int]:
        """A signed token for `user_id` at token `version`, and its lifetime in seconds (the
        `expires_in` to report)."""
        now = int(self._clock())
        claims = {
            "ver": version,
            "sub": str(user_id),
            "iat": now,
            "exp": now + self._ttl_s,
            "iss": self._issuer,
            "aud": self._audience,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.key_id})
        return token, self._ttl_s

    def verifier(self, leeway_s: float = 10) -> TokenVerifier:
        """A verifier for this issuer's own tokens (the auth service checks them with it)."""
        return TokenVerifier({self.key_id: self.public_key}, self._issuer, self._audience, leeway_s)


#: Tokens a verifier remembers as verified, at most (~0.3 KiB each).
VERIFIED_TOKENS = 1024


class TokenVerifier:
    """Checks tokens against known public keys (by `kid`), issuer, audience and lifetime.

    `leeway_s` tolerates clock skew between the machine that signed and the one verifying.
    A token that verified is remembered (its claims) for the next calls that carry it, the
    same bytes, until it expires: a client sends its token with every request, and the
    signature check and parsing were most of a REST send's authentication cost. The keys are
    fixed for a verifier's life, so nothing that verified once can stop verifying but by
    expiring, which is checked on every call; revocation (the version in the claims against the
    user's current one) is checked by the callers on every call too, never remembered here.
    """

    def __init__(
        self,
        keys: Mapping[str, Ed25519PublicKey],
        issuer: str,
        audience: str,
        leeway_s: float = 10,
    ) -> None:
        if not keys:
            raise ValueError("a verifier needs at least one public key")
        self._keys = dict(keys)
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s
        #: Verified tokens' claims (oldest first, for eviction).
        self._verified: dict[str, TokenClaims] = {}

    def verify(self, token: str) -> uuid.UUID:
        """The user the token was issued to, or raise `InvalidToken`."""
        return self.claims(token).user_id

    def claims(self, token: str) -> TokenClaims:
        """What the token says once its signature, issuer, audience and lifetime check out
        (whether its version is still current is `revocation.py`'s question), or raise
        `InvalidToken`. A token verified before is not verified again: its claims are
        remembered, and its expiry is checked on every call."""
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known.expires_at + self._leeway_s:
                return known
            del self._verified[token]
            raise InvalidToken("expired", "token has expired")
        key = self._key_for(token)
        claims = self._decode(token, key)
        try:
            user_id = uuid.UUID(str(claims["sub"]))
        except ValueError:
            raise InvalidToken("bad_subject", "token subject is not a user id") from None
        version = claims.get("ver", 0)
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise InvalidToken("malformed", "token version is not a non-negative integer")
        verified = TokenClaims(user_id, version, float(claims["exp"]))
        self._remember(token, verified)
        return verified

    def _remember(self, token: str, claims: TokenClaims) -> None:
        if len(self._verified) >= VERIFIED_TOKENS:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = claims

    def _key_for(self, token: str) -> Ed25519PublicKey:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidToken("malformed", "token is not a well-formed JWT") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("malformed", f"token algorithm must be {ALGORITHM}")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown_kid", "token was signed with an unknown key")
        return key

    def _decode(self, token: str, key: Ed25519PublicKey) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired", "token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("not_yet_valid", "token is not valid yet") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad_signature", "token signature does not verify") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("wrong_audience", "token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong_issuer", "token is from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken("missing_claim", f"token lacks the {exc.claim} claim") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("malformed", "token is not a well-formed JWT") from None


def jwk(public_key: Ed25519PublicKey, key_id: str) -> dict[str, str]:
    """One public key as an RFC 8037 OKP JWK."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii"),
        "kid": key_id,
        "alg": ALGORITHM,
        "use": "sig",
    }


def jwks(public_key: Ed25519PublicKey, key_id: str) -> dict[str, list[dict[str, str]]]:
    """The JWK Set the auth service publishes at /.well-known/jwks.json."""
    return {"keys": [jwk(public_key, key_id)]}


def _read_pem(path: Path | None, setting: str) -> bytes:
    if path is None:
        raise KeyConfigError(f"{setting} is not set")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None


def load_private_key(path: Path | None, setting: str) -> Ed25519PrivateKey:
    data = _read_pem(path, setting)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyConfigError(f"{setting}: {path} is not an unencrypted PEM Ed25519 private key")
    return key


def load_public_key(path: Path | None, setting: str) -> Ed25519PublicKey:
    data = _read_pem(path, setting)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyConfigError(f"{setting}: {path} is not a PEM Ed25519 public key")
    return key


def load_issuer(settings: AuthSettings) -> TokenIssuer:
    """The auth service's signer, from `REALCHAT_AUTH__PRIVATE_KEY_FILE` (read now, not at
    import)."""
    key = load_private_key(settings.private_key_file, "REALCHAT_AUTH__PRIVATE_KEY_FILE")
    return TokenIssuer(
        key, settings.key_id, settings.issuer, settings.audience, settings.token_ttl_s
    )


def load_verifier(settings: AuthSettings) -> TokenVerifier:
    """What the gateway and the chat service verify with: `REALCHAT_AUTH__PUBLIC_KEY_FILE`,
    known under `REALCHAT_AUTH__KEY_ID`."""
    key = load_public_key(settings.public_key_file, "REALCHAT_AUTH__PUBLIC_KEY_FILE")
    return TokenVerifier({settings.key_id: key}, settings.issuer, settings.audience)
