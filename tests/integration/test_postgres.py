"""Migrations against the real PostgreSQL of the test stack."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from realchat.stack.supervisor import Stack
from realchat.storage.migrations import MigrationError, load_migrations, migrate

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def scratch_dsn(stack: Stack) -> AsyncIterator[str]:
    """A fresh, empty database for one test."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    await stack.postgres.ensure_database(name)
    yield stack.postgres.dsn(name)
    admin = await asyncpg.connect(stack.postgres.dsn("postgres"))
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def write(folder: Path, name: str, sql: str) -> None:
    (folder / name).write_text(sql)


async def test_migrations_apply_once_and_in_order(scratch_dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_items.sql", "CREATE TABLE items (id int PRIMARY KEY);")
    write(tmp_path, "0002_items_name.sql", "ALTER TABLE items ADD COLUMN name text;")
    conn = await asyncpg.connect(scratch_dsn)
    try:
        applied = await migrate(conn, load_migrations(tmp_path))
        assert [m.version for m in applied] == [1, 2]
        assert await migrate(conn, load_migrations(tmp_path)) == []
        await conn.execute("INSERT INTO items (id, name) VALUES (1, 'x')")
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == [1, 2]
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_half_applied(
    scratch_dsn: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_ok.sql", "CREATE TABLE ok (id int);")
    write(tmp_path, "0002_broken.sql", "CREATE TABLE half (id int); SELECT no_such_function();")
    conn = await asyncpg.connect(scratch_dsn)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(conn, load_migrations(tmp_path))
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == 1
        assert await conn.fetchval("SELECT to_regclass('half')") is None
    finally:
        await conn.close()


async def test_editing_an_applied_migration_is_refused(scratch_dsn: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_t.sql", "CREATE TABLE t (id int);")
    conn = await asyncpg.connect(scratch_dsn)
    try:
        await migrate(conn, load_migrations(tmp_path))
        write(tmp_path, "0001_t.sql", "CREATE TABLE t (id bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, load_migrations(tmp_path))
    finally:
        await conn.close()


async def test_concurrent_migrators_apply_each_migration_once(
    scratch_dsn: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_t.sql", "CREATE TABLE t (id int); SELECT pg_sleep(0.3);")
    conns = [await asyncpg.connect(scratch_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c, load_migrations(tmp_path)) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, 1]
    finally:
        for c in conns:
            await c.close()


async def test_stack_database_carries_the_shipped_schema(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.postgres.dsn())
    try:
        applied = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await conn.close()
    assert applied == len(load_migrations())
