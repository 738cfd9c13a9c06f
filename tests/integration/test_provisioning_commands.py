"""`realchat migrate` and `realchat topics create`, the one-shot jobs of the compose deployment,
run as processes against a PostgreSQL and a Kafka of this test's own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from confluent_kafka.admin import AdminClient

from realchat.bus.admin import realchat_topics
from realchat.config import Settings
from realchat.stack.supervisor import Stack
from realchat.storage.migrations import load_migrations
from tests.support.stacks import throwaway_stack

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

PARTITIONS = 3


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def infrastructure(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    stack = Stack(
        Settings(stack=throwaway_stack(tmp_path_factory.mktemp("stack"))),
        include={"postgres", "kafka"},
        report=print,
    )
    try:
        await stack.up()
        yield stack
    finally:
        await stack.down()


def realchat(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REALCHAT_")}
    return subprocess.run(
        [sys.executable, "-m", "realchat", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_migrate_applies_the_schema_once(infrastructure: Stack) -> None:
    name = f"compose_{uuid.uuid4().hex[:12]}"
    await infrastructure.postgres.ensure_database(name)
    dsn = infrastructure.postgres.dsn(name)

    first = realchat("migrate", REALCHAT_DATABASE__URL=dsn)
    assert first.returncode == 0, first.stdout + first.stderr
    for migration in load_migrations():
        assert f"{migration.version:04d}_{migration.name}" in first.stdout
    conn = await asyncpg.connect(dsn)
    try:
        applied = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        assert applied == len(load_migrations())
    finally:
        await conn.close()

    again = realchat("migrate", REALCHAT_DATABASE__URL=dsn)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "up to date" in again.stdout

    unset = realchat("migrate")
    assert unset.returncode == 1
    assert "REALCHAT_DATABASE__URL" in unset.stdout


async def test_topics_create_makes_the_topics_and_refuses_another_partition_count(
    infrastructure: Stack,
) -> None:
    bootstrap = infrastructure.kafka.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [spec.name for spec in realchat_topics(1, 1, 1)]
    # The stack created them at start-up: start from none, as a new deployment does.
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result(timeout=30)

    def topics_create(partitions: int) -> subprocess.CompletedProcess[str]:
        return realchat(
            "topics",
            "create",
            REALCHAT_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
            REALCHAT_KAFKA__PARTITIONS=str(partitions),
        )

    created = topics_create(PARTITIONS)
    assert created.returncode == 0, created.stdout + created.stderr
    topics = admin.list_topics(timeout=30).topics
    for name in names:
        assert len(topics[name].partitions) == PARTITIONS

    assert topics_create(PARTITIONS).returncode == 0
    mismatch = topics_create(PARTITIONS + 1)
    assert mismatch.returncode == 1
    assert "partitions" in mismatch.stdout
