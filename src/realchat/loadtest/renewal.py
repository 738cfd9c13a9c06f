"""When the load generator's clients renew their tokens and move their sessions to new ones.

A session lives as long as its token (the gateway closes it with 4001 at expiry). The tokens of a
population are minted together at setup, so if clients only reacted to that close, every session
of a long run would end in the same second and every user would renew at once: a reconnect storm
that no real population makes, and that measures the generator instead of the stack. So each
session leaves on its own at a random point of its token's second half (`rotation_at`), and a
client that connects with a token past its half-life renews it first (`needs_renewal`): the
population moves to fresh tokens spread over a quarter of their lifetime.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import jwt

from realchat.auth.tokens import TokenIssuer, load_private_key
from realchat.config import AuthSettings
from realchat.loadtest.messages import TokenMinting

#: A token past this share of its lifetime is renewed before it is used for a new session.
RENEW_AFTER = 0.5
#: Sessions leave between these shares of their token's lifetime.
ROTATE_BETWEEN = (0.6, 0.85)


@dataclass(frozen=True)
class TokenLifetime:
    """A token's `iat` and `exp` (Unix seconds)."""

    issued_at: float
    expires_at: float

    @classmethod
    def of(cls, token: str) -> TokenLifetime:
        """Read from the token's claims without verifying them: the generator only times its
        renewals by them; the gateway is who checks the token."""
        claims = jwt.decode(token, options={"verify_signature": False})
        return cls(float(claims["iat"]), float(claims["exp"]))

    @property
    def seconds(self) -> float:
        return max(0.0, self.expires_at - self.issued_at)


def needs_renewal(lifetime: TokenLifetime, now: float) -> bool:
    return now >= lifetime.issued_at + RENEW_AFTER * lifetime.seconds


def rotation_at(lifetime: TokenLifetime, rng: random.Random) -> float:
    """When a session on this token leaves to reconnect (with a renewed token)."""
    low, high = ROTATE_BETWEEN
    return lifetime.issued_at + rng.uniform(low, high) * lifetime.seconds


def minting_for(auth: AuthSettings) -> TokenMinting:
    """The operator's minting, from the stack's auth settings (its private key file set)."""
    return TokenMinting(
        str(auth.private_key_file), auth.key_id, auth.issuer, auth.audience, auth.token_ttl_s
    )


def issuer_for(minting: TokenMinting) -> TokenIssuer:
    """The signer that minting describes (reads the key file now)."""
    key = load_private_key(Path(minting.private_key_file), "REALCHAT_AUTH__PRIVATE_KEY_FILE")
    return TokenIssuer(key, minting.key_id, minting.issuer, minting.audience, minting.ttl_s)
