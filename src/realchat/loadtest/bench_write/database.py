"""The bench database: created fresh with the shipped schema, seeded, reset before every path,
and asked for its counters (WAL fsyncs, commits, stored messages)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from realchat.loadtest.bench_write.scenarios import (
    CONVERSATION_PREFIX,
    USER_PREFIX,
    indexed_uuid_sql,
)
from realchat.loadtest.procfs import parent_of
from realchat.stack.postgres import Postgres
from realchat.storage.migrations import migrate_database

BENCH_DATABASE = "realchat_bench"


@contextlib.asynccontextmanager
async def _connection(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def recreate_database(postgres: Postgres, name: str) -> str:
    """Drop and recreate the bench database with the shipped schema, so runs are comparable."""
    async with _connection(postgres.dsn("postgres")) as admin:
        quoted = await admin.fetchval("SELECT quote_ident($1)", name)
        await admin.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    await postgres.ensure_database(name)
    dsn = postgres.dsn(name)
    await migrate_database(dsn)
    return dsn


async def seed(dsn: str, conversations: int, users: int) -> None:
    """`conversations` conversations, each with the same `users` members (the callers): the
    recipients list in every outbox payload has the same size in both scenarios."""
    conversation = indexed_uuid_sql(CONVERSATION_PREFIX, "c")
    async with _connection(dsn) as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO conversations (id, title, created_by) "
            f"SELECT {conversation}, 'bench ' || c, {indexed_uuid_sql(USER_PREFIX, '0')} "
            "FROM generate_series(0, $1::int - 1) AS c",
            conversations,
        )
        await conn.execute(
            "INSERT INTO conversation_members (conversation_id, user_id) "
            f"SELECT {conversation}, {indexed_uuid_sql(USER_PREFIX, 'u')} "
            "FROM generate_series(0, $1::int - 1) AS c, generate_series(0, $2::int - 1) AS u",
            conversations,
            users,
        )


_RESET = (
    "TRUNCATE messages, message_changes, outbox",
    "UPDATE conversations SET last_seq = 0, last_change = 0",
    "VACUUM ANALYZE conversations, conversation_members",
    # So that no run pays for the previous run's dirty pages.
    "CHECKPOINT",
)


async def reset(dsn: str) -> None:
    """Empty tables and a clean checkpoint before every run: each path starts from the same
    state."""
    async with _connection(dsn) as conn:
        for statement in _RESET:
            await conn.execute(statement)


async def wal_syncs(dsn: str) -> int:
    """WAL fsyncs of the whole cluster so far (other databases are idle during a run)."""
    async with _connection(dsn) as conn:
        value: int = await conn.fetchval("SELECT wal_sync FROM pg_stat_wal")
        return value


async def commits(dsn: str) -> int:
    """Transactions committed in the bench database so far (flushed statistics)."""
    async with _connection(dsn) as conn:
        value: int = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return value


async def postmaster_pid(dsn: str) -> int:
    """The PostgreSQL server's main process: the parent of our own backend."""
    async with _connection(dsn) as conn:
        backend: int = await conn.fetchval("SELECT pg_backend_pid()")
        return parent_of(backend)  # while the backend lives


async def stored_messages(dsn: str) -> int:
    async with _connection(dsn) as conn:
        value: int = await conn.fetchval("SELECT count(*) FROM messages")
        return value


async def server_facts(dsn: str) -> dict[str, str]:
    """The PostgreSQL settings that shape write throughput, recorded with the numbers."""
    names = ("server_version", "synchronous_commit", "fsync", "wal_sync_method", "shared_buffers")
    async with _connection(dsn) as conn:
        return {name: str(await conn.fetchval(f"SHOW {name}")) for name in names}
