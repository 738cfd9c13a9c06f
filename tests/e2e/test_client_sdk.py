"""The Python SDK (`realchat.client`) against the real stack: two clients chat, every message
once and in order; a client whose connection is cut while the other sends reconnects, syncs and
has every message once, in order; a burst of sends beyond the per-user limit is stored whole (the
SDK retries the refused ones); receipts reach the other member; a bad token stops a client."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from realchat.client import (
    ClientOptions,
    Connected,
    Disconnected,
    Message,
    MessageUpdate,
    RealChatClient,
    Receipt,
    Unauthorized,
)
from tests.e2e.conftest import RealChat
from tests.support.client import PASSWORD
from tests.support.gateways import extra_gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")

T = TypeVar("T")
DEADLINE_S = 60.0
OPTIONS = ClientOptions(reconnect_initial_s=0.2, reconnect_max_s=2.0)


async def new_user(base: str, name: str) -> str:
    username = f"{name}_{uuid.uuid4().hex[:10]}"
    await RealChatClient.register(base, username, PASSWORD)
    return username


async def new_client(base: str, name: str, options: ClientOptions = OPTIONS) -> RealChatClient:
    return await RealChatClient.login(base, await new_user(base, name), PASSWORD, options=options)


async def take(stream: AsyncIterator[T], n: int) -> list[T]:
    async with asyncio.timeout(DEADLINE_S):
        return [await anext(stream) for _ in range(n)]


async def next_of(stream: AsyncIterator[object], kind: type[T]) -> T:
    async with asyncio.timeout(DEADLINE_S):
        while not isinstance(item := await anext(stream), kind):
            pass
        return item


def seqs(messages: list[Message]) -> list[int]:
    return [m.seq for m in messages]


async def test_two_clients_chat_and_see_every_message_once_in_order(realchat: RealChat) -> None:
    alice = await new_client(realchat.base_url, "alice", OPTIONS)
    bob = await new_client(realchat.base_url, "bob")
    async with alice, bob:
        await asyncio.gather(alice.wait_ready(DEADLINE_S), bob.wait_ready(DEADLINE_S))
        assert bob.user_id is not None
        conversation = (await alice.create_conversation([bob.user_id], "sdk")).conversation_id
        sent = [
            await (alice if n % 2 == 0 else bob).send(conversation, f"message {n}")
            for n in range(20)
        ]
        assert seqs(sent) == list(range(1, 21))
        for client in (alice, bob):
            received = await take(client.messages(), 20)
            assert received == sent  # own sends included (from their send_ok), each once
        # Anything extra (a duplicate) would come before the next message, which comes next.
        last = await bob.send(conversation, "last")
        for client in (alice, bob):
            assert await take(client.messages(), 1) == [last]


async def test_a_client_cut_off_while_the_other_sends_gets_all_of_it_once_in_order(
    realchat: RealChat,
) -> None:
    alice = await new_client(realchat.base_url, "alice")
    bob = await new_client(realchat.base_url, "bob")
    async with alice, bob:
        await asyncio.gather(alice.wait_ready(DEADLINE_S), bob.wait_ready(DEADLINE_S))
        assert bob.user_id is not None
        conversation = (await alice.create_conversation([bob.user_id])).conversation_id
        first = await alice.send(conversation, "before the cut")
        bob_messages, bob_events = bob.messages(), bob.events()
        assert await take(bob_messages, 1) == [first]
        assert isinstance(await next_of(bob_events, Connected), Connected)

        bob.connection.abort()  # the TCP stream is gone, no close handshake
        lost = await next_of(bob_events, Disconnected)
        assert lost.reconnect_in is not None
        sent = [await alice.send(conversation, f"while cut {n}") for n in range(50)]

        received = await take(bob_messages, 50)
        assert seqs(received) == list(range(2, 52))
        assert received == sent
        back = await next_of(bob_events, Connected)
        assert back.connection >= 2
        last = await alice.send(conversation, "after")
        assert await take(bob_messages, 1) == [last]  # nothing extra came in between


async def test_an_edit_made_while_a_client_was_away_reaches_it_after_it_reconnects(
    realchat: RealChat,
) -> None:
    """The conversation began after the client's handshake, so no sync had told it the
    conversation's change counter; an edit made while it was cut off comes with the sync of
    its reconnect (as a `MessageUpdate`), not never."""
    alice = await new_client(realchat.base_url, "alice")
    slow_back = replace(OPTIONS, reconnect_initial_s=4.0, reconnect_max_s=4.0)  # >= 2 s away
    bob = await new_client(realchat.base_url, "bob", slow_back)
    async with alice, bob:
        await asyncio.gather(alice.wait_ready(DEADLINE_S), bob.wait_ready(DEADLINE_S))
        assert bob.user_id is not None
        conversation = (await alice.create_conversation([bob.user_id])).conversation_id
        first = await alice.send(conversation, "first")
        bob_events = bob.events()
        assert await take(bob.messages(), 1) == [first]

        bob.connection.abort()
        cut_at = time.monotonic()
        lost = await next_of(bob_events, Disconnected)
        assert lost.reconnect_in is not None
        await alice.edit_message(conversation, first.seq, "first, fixed", client_change_id="e1")
        await next_of(alice.events(), MessageUpdate)  # through the bus: live delivery is past it
        assert time.monotonic() < cut_at + lost.reconnect_in, "bob was away for the edit"

        update = await next_of(bob_events, MessageUpdate)
        assert (update.message.seq, update.message.version) == (first.seq, 2)
        assert update.message.content == "first, fixed"


async def test_a_burst_beyond_the_send_limit_is_stored_whole_once_in_order(
    realchat: RealChat, tmp_path: Path
) -> None:
    async with extra_gateway(realchat.services, tmp_path, sends_per_s=5) as gateway:
        alice = await new_client(gateway.base_url, "alice")
        bob = await new_client(gateway.base_url, "bob")
        async with alice, bob:
            await asyncio.gather(alice.wait_ready(DEADLINE_S), bob.wait_ready(DEADLINE_S))
            assert bob.user_id is not None
            conversation = (await alice.create_conversation([bob.user_id])).conversation_id
            burst = (
                alice.send(conversation, f"burst {n}", timeout_s=DEADLINE_S) for n in range(15)
            )
            sent = await asyncio.gather(*burst)  # no RateLimited reaches the application
            assert sorted(seqs(sent)) == list(range(1, 16))
            assert alice.rate_limited_retries > 0  # the limit was hit, and hidden
            assert seqs(await take(bob.messages(), 15)) == list(range(1, 16))
            last = await alice.send(conversation, "last")
            assert await take(bob.messages(), 1) == [last]  # nothing stored twice


async def test_acks_become_receipts_and_a_new_client_resumes_after_them(
    realchat: RealChat,
) -> None:
    base = realchat.base_url
    auto = ClientOptions(auto_ack=True, auto_ack_interval_s=0.05)
    bob_name = await new_user(base, "bob")
    alice = await new_client(base, "alice")
    bob = await RealChatClient.login(base, bob_name, PASSWORD, options=auto)
    async with alice:
        async with bob:
            await asyncio.gather(alice.wait_ready(DEADLINE_S), bob.wait_ready(DEADLINE_S))
            assert bob.user_id is not None
            conversation = (await alice.create_conversation([bob.user_id])).conversation_id
            for n in range(5):
                await alice.send(conversation, f"read me {n}")
            assert seqs(await take(bob.messages(), 5)) == [1, 2, 3, 4, 5]  # auto-acked
            events = alice.events()
            receipt = await next_of(events, Receipt)
            while receipt.seq < 5:
                receipt = await next_of(events, Receipt)
            assert (receipt.conversation_id, receipt.user_id) == (conversation, bob.user_id)
        await alice.send(conversation, "unread")
        # A new client of bob's, given no positions, starts after what bob acknowledged.
        again = await RealChatClient.login(base, bob_name, PASSWORD, options=OPTIONS)
        async with again:
            (unread,) = await take(again.messages(), 1)
            assert (unread.seq, unread.content) == (6, "unread")


async def test_a_refused_token_stops_the_client_after_one_attempt(realchat: RealChat) -> None:
    client = RealChatClient(realchat.base_url, "not-a-token", options=OPTIONS)
    async with client:
        with pytest.raises(Unauthorized):
            await client.wait_ready(DEADLINE_S)
        assert client.connection.attempts == 1
