"""Operator tools: accounts in bulk and access tokens minted with the signing key.

Benchmarks and migrations need thousands of accounts. Through the API each costs an argon2id hash
at sign-up and another at login (~3 accounts a second on 2 cores), so a 2,500-user load test spent
13 minutes before its first message. Here the hash is computed once for the password the whole
batch shares, and tokens are signed directly, as the auth service would sign them after a login.

One hash for many accounts means equal stored hashes (same salt): anyone who reads the table sees
that these accounts share a password. That is the point for a test population and wrong for real
users, who sign up through the API.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from realchat.auth.passwords import Passwords
from realchat.auth.service import User, check_password, normalize_username
from realchat.auth.store import AuthStore
from realchat.auth.tokens import TokenIssuer

#: Accounts per INSERT statement: large enough to amortise the round trip, small enough that
#: one statement's arrays stay a few hundred kilobytes.
CHUNK = 5_000


@dataclass(frozen=True)
class MintedToken:
    user_id: uuid.UUID
    access_token: str
    expires_in: int


def numbered_usernames(prefix: str, count: int) -> list[str]:
    """`prefix_0` .. `prefix_<count-1>`, each checked by the contract's username rule."""
    return [normalize_username(f"{prefix}_{n}") for n in range(count)]


async def create_users(
    store: AuthStore, passwords: Passwords, usernames: Sequence[str], password: str
) -> list[User]:
    """Every one of `usernames` exists afterwards with `password` (accounts that existed keep
    theirs); returned in the order given. Invalid input is refused before anything is written."""
    names = [normalize_username(name) for name in usernames]
    check_password(password)
    if not names:
        return []
    password_hash = await passwords.hash(password)
    found: list[User] = []
    for start in range(0, len(names), CHUNK):
        records = await store.create_users(names[start : start + CHUNK], password_hash)
        found.extend(User(r.user_id, r.username) for r in records)
    return found


def mint_tokens(
    issuer: TokenIssuer,
    user_ids: Iterable[uuid.UUID],
    versions: Mapping[uuid.UUID, int] | None = None,
) -> list[MintedToken]:
    """Access tokens for `user_ids`, exactly as a login would issue them (claims, key, lifetime,
    the user's current token version from `versions`: 0 for accounts never logged out).
    Whether the accounts exist is the caller's concern: a token for a deleted account is as
    useless as one issued before the deletion."""
    minted = []
    for user_id in user_ids:
        token, expires_in = issuer.issue(user_id, (versions or {}).get(user_id, 0))
        minted.append(MintedToken(user_id, token, expires_in))
    return minted
