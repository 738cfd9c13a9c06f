"""The auth service's SQL: accounts in the `users` table (migration 0002)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class UserRecord:
    user_id: uuid.UUID
    username: str
    password_hash: str
    created_at: datetime
    #: The version the user's tokens are signed with now (migration 0005).
    token_version: int = 0


_COLUMNS = "id, username, password_hash, created_at, token_version"


def _user(row: asyncpg.Record) -> UserRecord:
    return UserRecord(
        user_id=row["id"],
        username=row["username"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        token_version=row["token_version"],
    )


class AuthStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_user(self, username: str, password_hash: str) -> UserRecord | None:
        """The new account, or None if the username is taken (also by a concurrent insert)."""
        row = await self._pool.fetchrow(
            f"INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3) "
            f"ON CONFLICT (username) DO NOTHING RETURNING {_COLUMNS}",
            uuid.uuid4(),
            username,
            password_hash,
        )
        return _user(row) if row is not None else None

    async def create_users(self, usernames: Sequence[str], password_hash: str) -> list[UserRecord]:
        """Accounts for all of `usernames` in one statement, existing ones left as they are
        (their password too): returns every one of them, new or not, in the order given."""
        rows = await self._pool.fetch(
            f"""
            WITH wanted AS (
                SELECT name, ord FROM unnest($1::text[]) WITH ORDINALITY AS w (name, ord)
            ), created AS (
                INSERT INTO users (id, username, password_hash)
                SELECT gen_random_uuid(), name, $2 FROM wanted
                ON CONFLICT (username) DO NOTHING
                RETURNING {_COLUMNS}
            )
            SELECT {_COLUMNS}, ord FROM (
                SELECT {_COLUMNS} FROM created
                UNION ALL
                SELECT {_COLUMNS} FROM users WHERE username = ANY($1::text[])
            ) AS found JOIN wanted ON wanted.name = found.username
            ORDER BY ord
            """,
            list(usernames),
            password_hash,
        )
        return [_user(row) for row in rows]

    async def token_versions(self, user_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """The current token version of those of `user_ids` that name an account."""
        rows = await self._pool.fetch(
            "SELECT id, token_version FROM users WHERE id = ANY($1::uuid[])", list(user_ids)
        )
        return {row["id"]: row["token_version"] for row in rows}

    async def find_by_username(self, username: str) -> UserRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM users WHERE username = $1", username
        )
        return _user(row) if row is not None else None

    async def find_by_id(self, user_id: uuid.UUID) -> UserRecord | None:
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
        return _user(row) if row is not None else None

    async def replace_password_hash(self, user_id: uuid.UUID, old: str, new: str) -> None:
        """Upgrade a hash to the current parameters, unless it changed meanwhile."""
        await self._pool.execute(
            "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
            user_id,
            old,
            new,
        )

    async def revoke_tokens(
        self, user_id: uuid.UUID, current: int, password_hash: str | None = None
    ) -> int | None:
        """Bump the user's token version (and set a new password hash, if given), provided it
        is still `current`: the new version, or None if it moved meanwhile (the token that asked
        was revoked already)."""
        version: int | None = await self._pool.fetchval(
            "UPDATE users SET token_version = token_version + 1, "
            "password_hash = coalesce($3, password_hash) "
            "WHERE id = $1 AND token_version = $2 RETURNING token_version",
            user_id,
            current,
            password_hash,
        )
        return version
