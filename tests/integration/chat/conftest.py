"""Chat fixtures on the real test stack: a fresh migrated database per test, the service on it,
and (for transport tests) an in-process gRPC server speaking to it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest_asyncio

from realchat.chat.api import ChatServicer
from realchat.chat.identity import InternalCredential
from realchat.chat.rpc import internal_metadata
from realchat.chat.service import ChatService
from realchat.chat.store import ChatStore
from realchat.chat.v1 import chat_pb2_grpc
from realchat.stack.supervisor import Stack
from tests.support.databases import fresh_database, utc_pool

OUTBOX_SHARDS = 8
INTERNAL_TOKEN = "test-internal-token-" + uuid.uuid4().hex


@pytest_asyncio.fixture(loop_scope="session")
async def db_dsn(stack: Stack) -> AsyncIterator[str]:
    async with fresh_database(stack.postgres) as dsn:
        yield dsn


@pytest_asyncio.fixture(loop_scope="session")
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    created = await utc_pool(db_dsn, max_size=40)
    try:
        yield created
    finally:
        await created.close()


@pytest_asyncio.fixture(loop_scope="session")
async def service(pool: asyncpg.Pool) -> ChatService:
    return ChatService(ChatStore(pool, OUTBOX_SHARDS))


@pytest_asyncio.fixture(loop_scope="session")
async def grpc_target(service: ChatService) -> AsyncIterator[str]:
    """An in-process chat gRPC server (the real servicer) on a free port."""
    server = grpc.aio.server()
    chat_pb2_grpc.add_ChatServiceServicer_to_server(
        ChatServicer(
            service, InternalCredential(INTERNAL_TOKEN), InternalCredential(INTERNAL_TOKEN)
        ),
        server,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


@pytest_asyncio.fixture(loop_scope="session")
async def channel(grpc_target: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(grpc_target) as ch:
        yield ch


def as_user(user_id: uuid.UUID) -> tuple[tuple[str, str], ...]:
    """Call metadata of a trusted caller acting for `user_id`."""
    return internal_metadata(INTERNAL_TOKEN, user_id)
