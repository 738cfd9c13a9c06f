"""Fresh, migrated PostgreSQL databases for tests that need a clean outbox or schema."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from realchat.stack.postgres import Postgres
from realchat.storage.migrations import migrate_database


@asynccontextmanager
async def fresh_database(postgres: Postgres) -> AsyncIterator[str]:
    """Create a database with the shipped schema; yield its DSN; drop it afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    await postgres.ensure_database(name)
    dsn = postgres.dsn(name)
    try:
        await migrate_database(dsn)
        yield dsn
    finally:
        admin = await asyncpg.connect(postgres.dsn("postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def utc_pool(dsn: str, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=max_size, server_settings={"timezone": "UTC"}
    )
    assert pool is not None
    return pool


async def new_users(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    """Accounts that exist (members must: made-up ids are refused), without a usable password."""
    ids = [uuid.uuid4() for _ in range(count)]
    await pool.executemany(
        "INSERT INTO users (id, username, password_hash) VALUES ($1, $2, 'unusable')",
        [(user_id, f"u{user_id.hex[:24]}") for user_id in ids],
    )
    return ids
