"""Operator provisioning on the real PostgreSQL: accounts in bulk with one hash, tokens minted
with the signing key, and both as the `realchat users create | realchat tokens mint` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from realchat.auth.errors import InvalidInput
from realchat.auth.keys import generate_keypair
from realchat.auth.passwords import Passwords
from realchat.auth.provisioning import create_users, numbered_usernames
from realchat.auth.store import AuthStore
from realchat.auth.tokens import load_verifier
from realchat.config import AuthSettings
from tests.integration.auth.conftest import FAST_HASHER

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "shared by the population"


async def test_bulk_accounts_exist_with_the_password_and_keep_existing_ones(
    pool: asyncpg.Pool,
) -> None:
    store = AuthStore(pool)
    passwords = Passwords(FAST_HASHER)
    before = await store.create_user("bulk_3", await passwords.hash("someone else's"))
    assert before is not None
    names = numbered_usernames("bulk", 40)

    created = await create_users(store, passwords, names, PASSWORD)

    assert [u.username for u in created] == names
    assert len({u.user_id for u in created}) == 40
    assert created[3].user_id == before.user_id
    for user in (created[0], created[39]):
        record = await store.find_by_id(user.user_id)
        assert record is not None
        assert await passwords.verify(record.password_hash, PASSWORD)
    kept = await store.find_by_id(before.user_id)
    assert kept is not None
    assert kept.password_hash == before.password_hash
    again = await create_users(store, passwords, names, PASSWORD)
    assert again == created
    assert await pool.fetchval("SELECT count(*) FROM users") == 40


async def test_one_invalid_name_writes_nothing(pool: asyncpg.Pool) -> None:
    with pytest.raises(InvalidInput):
        await create_users(AuthStore(pool), Passwords(FAST_HASHER), ["fine_1", "NOT OK"], PASSWORD)
    with pytest.raises(InvalidInput):
        await create_users(AuthStore(pool), Passwords(FAST_HASHER), ["fine_1"], "short")
    assert await pool.fetchval("SELECT count(*) FROM users") == 0


def realchat(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "realchat", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_users_create_output_feeds_tokens_mint(
    db_dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    private, public = generate_keypair(tmp_path / "keys")
    env = {
        **os.environ,
        "REALCHAT_DATABASE__URL": db_dsn,
        "REALCHAT_AUTH__PRIVATE_KEY_FILE": str(private),
        "REALCHAT_AUTH__PUBLIC_KEY_FILE": str(public),
    }
    refused = realchat(env, "users", "create", "--prefix", "cli", "--count", "5")
    assert refused.returncode == 2
    assert "REALCHAT_PROVISION_PASSWORD" in refused.stderr
    assert await pool.fetchval("SELECT count(*) FROM users") == 0

    env["REALCHAT_PROVISION_PASSWORD"] = PASSWORD
    created = realchat(env, "users", "create", "--prefix", "cli", "--count", "5")
    assert created.returncode == 0, created.stderr
    users = [json.loads(line) for line in created.stdout.splitlines()]
    assert [u["username"] for u in users] == [f"cli_{n}" for n in range(5)]

    minted = realchat(env, "tokens", "mint", stdin=created.stdout)
    assert minted.returncode == 0, minted.stderr
    tokens = [json.loads(line) for line in minted.stdout.splitlines()]
    assert [t["user_id"] for t in tokens] == [u["user_id"] for u in users]
    verifier = load_verifier(AuthSettings(public_key_file=public))
    assert [str(verifier.verify(t["access_token"])) for t in tokens] == [
        u["user_id"] for u in users
    ]

    unknown = realchat(env, "tokens", "mint", stdin=f"{uuid.uuid4()}\n")
    assert unknown.returncode == 1
    assert "no account with id" in unknown.stderr
    garbage = realchat(env, "tokens", "mint", stdin="not-an-id\n")
    assert garbage.returncode == 2
    assert "line 1" in garbage.stderr
