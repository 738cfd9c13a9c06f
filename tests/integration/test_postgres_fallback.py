"""PostgreSQL's data when the `postgres` user cannot enter the state dir (a checkout under /root,
a test's private tmp dir): it lives in a fallback dir linked from the state dir, a reset deletes
it, and a stack whose state was deleted comes back with a fresh, reachable cluster."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import asyncpg
import pytest

from realchat.config import Settings
from realchat.stack.postgres import FALLBACK_ROOT, FINGERPRINT_FILE, OWNER_FILE
from realchat.stack.supervisor import Stack
from tests.support.stacks import throwaway_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="only a root-run stack runs as `postgres`"),
]


def private_state_dir(tmp_path: Path) -> Path:
    """A state dir inside a 0700 dir of root's: the `postgres` user cannot enter it."""
    private = tmp_path / "private"
    private.mkdir()
    os.chmod(private, 0o700)
    return private / "stack"


def postgres_only(settings: Settings) -> Stack:
    return Stack(settings, include={"postgres"}, report=print)


async def up_with_marker(stack: Stack) -> Stack:
    """Start PostgreSQL, check it answers and is a new cluster, and leave a table as a marker."""
    await stack.up()
    assert [s.healthy for s in await stack.status()] == [True]
    conn = await asyncpg.connect(stack.postgres.dsn("postgres"))
    try:
        assert not await conn.fetchval("SELECT to_regclass('marker') IS NOT NULL")
        await conn.execute("CREATE TABLE marker (id int)")
    finally:
        await conn.close()
    return stack


async def test_fallback_data_is_linked_reset_removes_it_and_a_deleted_state_recovers(
    tmp_path: Path,
) -> None:
    state = private_state_dir(tmp_path)
    settings = Settings(stack=throwaway_stack(state))
    stack = postgres_only(settings)
    try:
        await up_with_marker(stack)
        data = stack.postgres.data_dir
        home = data.parent
        assert home.parent == FALLBACK_ROOT
        assert (state / "postgres").is_symlink()
        assert (state / "postgres").resolve() == data
        assert (home / OWNER_FILE).read_text().strip() == str(state.resolve())
        await stack.down()

        # The state dir deleted by hand (`rm -rf var`): a fresh cluster, reachable again.
        shutil.rmtree(state)
        stack = postgres_only(settings)
        await up_with_marker(stack)  # a new cluster: no marker
        assert stack.postgres.data_dir == data
        await stack.down()

        # Only the secrets deleted: the cluster's password is unknown, so it is replaced.
        shutil.rmtree(state / "secrets")
        stack = postgres_only(settings)
        await up_with_marker(stack)
        await stack.down()

        # A dir left by an older version (no owner, no fingerprint, no link) is replaced too.
        for leftover in (home / OWNER_FILE, home / FINGERPRINT_FILE):
            leftover.unlink()
        shutil.rmtree(state)
        stack = postgres_only(settings)
        await up_with_marker(stack)

        await stack.reset()
        assert not home.exists()
        assert not state.exists()

        # A restart after the reset comes up healthy on a new cluster.
        stack = postgres_only(settings)
        await up_with_marker(stack)
        assert stack.postgres.data_dir == data
    finally:
        await stack.reset()
    assert not home.exists()
