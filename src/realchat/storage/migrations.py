"""Versioned SQL migrations: `NNNN_what.sql` files applied in order, each in its own transaction.

A `schema_migrations` table records what ran and a checksum of it; editing a migration that was
already applied is refused rather than silently ignored. An advisory lock lets several processes
start at once without applying anything twice.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from realchat.storage.pool import DATABASE_ERRORS

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
#: Arbitrary constant naming the "migrations" advisory lock.
_LOCK_KEY = 0x5245414C  # "REAL"


@dataclass(frozen=True, order=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read the migrations shipped with the package (or those in `directory`), in order."""
    folder = directory or Path(str(resources.files("realchat.storage") / "migrations"))
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {folder}")
    return sorted(found)


async def migrate(conn: asyncpg.Connection, migrations: list[Migration]) -> list[Migration]:
    """Apply what is missing; return what was applied now."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now()
               )"""
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied = {r["version"]: r for r in rows}
        done: list[Migration] = []
        for migration in migrations:
            row = applied.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version}_{migration.name} changed after it was "
                        "applied; add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def migrate_database(dsn: str, directory: Path | None = None) -> list[Migration]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, load_migrations(directory))
    finally:
        await conn.close()


@functools.cache
def latest_version() -> int:
    return load_migrations()[-1].version


async def schema_is_current(pool: asyncpg.Pool, timeout_s: float = 2.0) -> bool:
    """Readiness of a process that needs the database: it answers, and every migration this
    code ships has been applied (a process newer than its schema must not take traffic)."""
    try:
        applied = await pool.fetchval(
            "SELECT max(version) FROM schema_migrations", timeout=timeout_s
        )
    except DATABASE_ERRORS:
        return False
    return applied is not None and applied >= latest_version()
