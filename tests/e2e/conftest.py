"""The whole RealChat on the test stack: auth service, chat service, outbox publisher, presence
service and a gateway, started once per session as real processes on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest_asyncio

from realchat.config import (
    AuthSettings,
    ChatSettings,
    GatewaySettings,
    HttpSettings,
    KafkaSettings,
    OutboxSettings,
    Settings,
)
from realchat.stack.shape import EVERYTHING, SERVICES
from realchat.stack.supervisor import Stack
from tests.support.ports import free_port_block
from tests.support.stacks import FAST_PRESENCE, TEST_STACK


@dataclass
class RealChat:
    base_url: str
    services: Stack
    settings: Settings


def services_settings(base: int) -> Settings:
    return Settings(
        stack=TEST_STACK,
        kafka=KafkaSettings(partitions=6),
        http=HttpSettings(port=base),
        chat=ChatSettings(grpc_port=base + 1, ops_port=base + 2),
        outbox=OutboxSettings(ops_port=base + 3),
        auth=AuthSettings(
            http_port=base + 4, ops_port=base + 5, url=f"http://127.0.0.1:{base + 4}"
        ),
        # The send rate limit has tests of its own; here it would only slow the senders down.
        gateway=GatewaySettings(ops_port=base + 6, instance_id=f"test-{base}", sends_per_s=100_000),
        presence=FAST_PRESENCE.model_copy(update={"ops_port": base + 7}),
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def realchat(stack: Stack) -> AsyncIterator[RealChat]:
    """Depends on `stack` for the infrastructure; starts and stops only the services."""
    base = free_port_block(offsets=tuple(range(8)))
    settings = services_settings(base)
    services = Stack(settings, include=EVERYTHING, report=print)
    try:
        await services.up()
        yield RealChat(f"http://127.0.0.1:{base}", services, settings)
    finally:
        for name in sorted(SERVICES):
            await services.stop_component(name)


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
