"""`realchat users create` and `realchat tokens mint`: the operator tools of `provisioning.py`
on the command line, reading and writing JSON lines so their output can feed each other."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Iterable
from typing import TextIO

from realchat.auth.errors import InvalidInput
from realchat.auth.passwords import Passwords
from realchat.auth.provisioning import create_users, mint_tokens, numbered_usernames
from realchat.auth.store import AuthStore
from realchat.auth.tokens import KeyConfigError, load_issuer
from realchat.config import Settings
from realchat.storage.pool import create_pool

#: Where `users create` takes the password from: never the command line (other users of the
#: machine can read every process's arguments).
PASSWORD_VARIABLE = "REALCHAT_PROVISION_PASSWORD"

#: Accounts one `users create` makes (its output and the statements' arrays stay bounded).
MAX_COUNT = 1_000_000

Say = Callable[[str], None]


async def users_create_command(settings: Settings, prefix: str, count: int, say: Say) -> int:
    password = os.environ.get(PASSWORD_VARIABLE)
    if not password:
        print(f"error: set {PASSWORD_VARIABLE} to the accounts' password", file=sys.stderr)
        return 2
    if not 1 <= count <= MAX_COUNT:
        print(f"error: --count must be 1..{MAX_COUNT}", file=sys.stderr)
        return 2
    try:
        usernames = numbered_usernames(prefix, count)
    except InvalidInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    pool = await create_pool(settings.database, "realchat-users-create")
    try:
        users = await create_users(AuthStore(pool), Passwords(), usernames, password)
    except InvalidInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await pool.close()
    for user in users:
        say(json.dumps({"user_id": str(user.user_id), "username": user.username}))
    return 0


async def tokens_mint_command(settings: Settings, source: TextIO, say: Say) -> int:
    """Tokens for the user ids on `source` (one per line, bare or as `{"user_id": ...}` like
    `users create` prints); every id must name an existing account."""
    try:
        user_ids = list(_read_user_ids(source))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        issuer = load_issuer(settings.auth)
    except KeyConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pool = await create_pool(settings.database, "realchat-tokens-mint")
    try:
        known = await AuthStore(pool).token_versions(user_ids)
    finally:
        await pool.close()
    unknown = [str(u) for u in user_ids if u not in known]
    if unknown:
        print(f"error: no account with id {', '.join(unknown[:5])}", file=sys.stderr)
        return 1
    for minted in mint_tokens(issuer, user_ids, known):
        say(
            json.dumps(
                {
                    "user_id": str(minted.user_id),
                    "access_token": minted.access_token,
                    "expires_in": minted.expires_in,
                }
            )
        )
    return 0


def _read_user_ids(source: TextIO) -> Iterable[uuid.UUID]:
    for number, line in enumerate(source, 1):
        text = line.strip()
        if not text:
            continue
        try:
            value = json.loads(text)["user_id"] if text.startswith("{") else text
            yield uuid.UUID(str(value))
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"line {number}: not a user id: {text[:80]!r}") from None
