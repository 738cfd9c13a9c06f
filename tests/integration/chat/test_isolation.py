"""Known risk: transaction isolation misconfiguration (plan §13).

The write path is correct at READ COMMITTED: the counter row's lock serialises the writers of a
conversation and each waiting UPDATE re-reads the committed counter. At REPEATABLE READ or
SERIALIZABLE the same concurrent UPDATEs fail with serialization errors instead, so a database
whose default isolation was raised by an operator would turn contention into failed sends. The
pool pins READ COMMITTED per session; this test raises the database default and checks that
concurrent senders still get every seq exactly once.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from pydantic import SecretStr

from realchat.chat.service import ChatService
from realchat.chat.store import ChatStore
from realchat.config import DatabaseSettings
from realchat.stack.supervisor import Stack
from realchat.storage.pool import create_pool
from tests.support.databases import fresh_database, new_users

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize("default_isolation", ["repeatable read", "serializable"])
async def test_sends_stay_gapless_whatever_the_database_default_isolation(
    stack: Stack, default_isolation: str
) -> None:
    async with fresh_database(stack.postgres) as dsn:
        name = dsn.rsplit("/", 1)[1].split("?")[0]
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(
                f'ALTER DATABASE "{name}" '
                f"SET default_transaction_isolation = '{default_isolation}'"
            )
        finally:
            await admin.close()
        pool = await create_pool(DatabaseSettings(url=SecretStr(dsn)), "isolation-test")
        try:
            async with pool.acquire() as conn:
                assert await conn.fetchval("SHOW transaction_isolation") == "read committed"
            service = ChatService(ChatStore(pool, 8))
            users = await new_users(pool, 20)
            created = await service.create_conversation(users[0], [str(u) for u in users[1:]], "")
            conversation = str(created.conversation_id)

            async def send(sender: uuid.UUID, n: int) -> int:
                sent = await service.send_message(sender, conversation, f"{sender}-{n}", f"m{n}")
                return sent.message.seq

            seqs = await asyncio.gather(*(send(u, n) for u in users for n in range(10)))
            assert sorted(seqs) == list(range(1, 201))
        finally:
            await pool.close()
