"""Fixtures shared by the whole suite.

The real PostgreSQL, Redis and Kafka of the test stack start lazily, on the first test that asks
for them, once per session; they are stopped at the end unless they were already running (then a
developer started them with `REALCHAT_STACK__STATE_DIR=var/test realchat stack up`, and keeps them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from realchat.config import KafkaSettings, Settings
from realchat.stack.shape import INFRASTRUCTURE
from realchat.stack.supervisor import Stack
from tests.support.stacks import TEST_STACK, purge_throwaway_data


@pytest.fixture(scope="session", autouse=True)
def _purge_throwaway_data_at_end() -> Iterator[None]:
    """Throw-away stacks still holding data at the end of the session (any left running are
    stopped by their own fixtures first: this one is torn down last)."""
    yield
    purge_throwaway_data(finished_only=False)


@pytest.fixture(autouse=True)
def _purge_throwaway_data() -> Iterator[None]:
    """The data of the throw-away stacks a test brought down, deleted right after it."""
    yield
    purge_throwaway_data()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack() -> AsyncIterator[Stack]:
    settings = Settings(stack=TEST_STACK, kafka=KafkaSettings(partitions=6))
    test_stack = Stack(settings, include=INFRASTRUCTURE, report=print)
    already_running = all(test_stack.running_pid(c.name) for c in test_stack.components())
    try:
        await test_stack.up()
        yield test_stack
    finally:
        if not already_running:
            await test_stack.down()
