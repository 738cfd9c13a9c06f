"""The SDK's typing indicators against the real stack: one client's `typing()` reaches the other
member as a `Typing` event, start and stop, and `TypingTracker` shows it by the contract's rule."""

from __future__ import annotations

import time

import pytest

from realchat.client import RealChatClient, Typing, TypingTracker
from tests.e2e.conftest import RealChat
from tests.e2e.test_client_sdk import DEADLINE_S, OPTIONS, new_client, next_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_typing_reaches_the_other_member_as_events(realchat: RealChat) -> None:
    alice: RealChatClient = await new_client(realchat.base_url, "alice", OPTIONS)
    bob = await new_client(realchat.base_url, "bob")
    async with alice, bob:
        await alice.wait_ready(DEADLINE_S)
        await bob.wait_ready(DEADLINE_S)
        assert alice.user_id is not None
        assert bob.user_id is not None
        conversation = (await alice.create_conversation([bob.user_id])).conversation_id
        events = bob.events()
        tracker = TypingTracker()
        await alice.typing(conversation)
        started = await next_of(events, Typing)
        assert started == Typing(conversation, alice.user_id, True)
        tracker.seen(started, time.monotonic())
        assert tracker.typing(conversation, time.monotonic()) == [alice.user_id]
        await alice.typing(conversation, False)
        stopped = await next_of(events, Typing)
        assert stopped == Typing(conversation, alice.user_id, False)
        tracker.seen(stopped, time.monotonic())
        assert tracker.typing(conversation, time.monotonic()) == []
