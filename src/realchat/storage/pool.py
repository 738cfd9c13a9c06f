"""Connection pools: every RealChat process talks to PostgreSQL the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from realchat.config import DatabaseSettings

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    #: A connection of our own or one borrowed from a pool: the SQL functions take either.
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]


#: What a lost or restarting PostgreSQL can raise through asyncpg: the caller retries later.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


class DatabaseNotConfigured(RuntimeError):  # noqa: N818
    pass


def database_url(settings: DatabaseSettings) -> str:
    if settings.url is None:
        raise DatabaseNotConfigured(
            "REALCHAT_DATABASE__URL is not set (the local stack sets it: `realchat stack env`)"
        )
    return settings.url.get_secret_value()


async def _keep_session(conn: object) -> None:
    """A released connection keeps its session as it is (see `create_pool`)."""


async def create_pool(
    settings: DatabaseSettings,
    application_name: str,
    session: Mapping[str, str] | None = None,
    *,
    stateless: bool = False,
) -> asyncpg.Pool:
    """A pool whose sessions speak UTC, so every timestamp leaves as RFC 3339 UTC, and run at
    READ COMMITTED whatever the database default: the write path relies on it (a waiting
    counter UPDATE re-reads the committed row; at higher levels it fails with a serialization
    error instead, tests/integration/chat/test_isolation.py). `session`: more settings of the
    process's sessions.

    `stateless`: the process never leaves session state on a pooled connection (no LISTEN, SET,
    session advisory lock or cursor), so a released connection skips asyncpg's reset query (one
    more round trip and transaction per release: on the chat service's write path, ~15 % of
    PostgreSQL's CPU per message). An open transaction is still rolled back."""
    pool = await asyncpg.create_pool(
        database_url(settings),
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        server_settings={
            "timezone": "UTC",
            "application_name": application_name,
            "default_transaction_isolation": "read committed",
            **(session or {}),
        },
        reset=_keep_session if stateless else None,
    )
    assert pool is not None
    return pool
