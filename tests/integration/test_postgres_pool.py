"""The process pools against real PostgreSQL: what a released connection keeps, and what not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from pydantic import SecretStr

from realchat.config import DatabaseSettings
from realchat.stack.supervisor import Stack
from realchat.storage.pool import create_pool
from tests.support.databases import fresh_database

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def one_connection(stack: Stack) -> AsyncIterator[DatabaseSettings]:
    """Settings of a pool with a single connection, so every acquire gets the same session."""
    async with fresh_database(stack.postgres) as dsn:
        yield DatabaseSettings(url=SecretStr(dsn), pool_min_size=1, pool_max_size=1)


async def test_a_stateless_pool_still_rolls_back_what_a_released_connection_left_open(
    one_connection: DatabaseSettings,
) -> None:
    pool = await create_pool(one_connection, "pool-test", stateless=True)
    try:
        await pool.execute("CREATE TABLE IF NOT EXISTS kept (n int)")
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO kept VALUES (1)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM kept") == 0
    finally:
        await pool.close()


@pytest.mark.parametrize(("stateless", "kept"), [(True, "off"), (False, "on")])
async def test_only_a_stateless_pool_skips_the_session_reset(
    one_connection: DatabaseSettings, stateless: bool, kept: str
) -> None:
    pool = await create_pool(one_connection, "pool-test", stateless=stateless)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW enable_seqscan") == "on"
            await conn.execute("SET enable_seqscan = off")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW enable_seqscan") == kept
            assert await conn.fetchval("SHOW timezone") == "UTC", "the pool's own settings stay"
    finally:
        await pool.close()
