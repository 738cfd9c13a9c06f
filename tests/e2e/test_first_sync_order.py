"""A fresh connection's first sync is never overtaken by live events (docs/protocol.md, "Order
and duplicates"): a raw client syncs from a position right after its hello while messages of
the conversation are in flight, and must see the backfill and then the live messages in one
increasing run of seqs (it once saw 104, 105, 6, 7, ...)."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from tests.e2e.conftest import RealChat
from tests.support.client import create_conversation, register, send_rest
from tests.support.rawws import RawWebSocket

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Fresh connections, each racing the live traffic with its first sync.
ATTEMPTS = 8
POSITION = 5


async def test_live_events_never_overtake_the_first_syncs_backfill(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url  # the fixture's gateway has no send limit
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    conversation = await create_conversation(http, base, alice, bob)
    for n in range(20):
        await send_rest(http, base, alice, conversation, f"before {n}")
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            await send_rest(http, base, alice, conversation, uuid.uuid4().hex)

    senders = [asyncio.create_task(traffic()) for _ in range(4)]
    try:
        await asyncio.sleep(0.5)  # live events flow
        for _ in range(ATTEMPTS):
            client = await RawWebSocket.connect(f"{base}/v1/ws?token={bob.token}")
            try:
                seqs = await first_sync(client, conversation)
            finally:
                client.close()
            assert seqs[0] == POSITION + 1, seqs[:10]
            assert seqs == list(range(POSITION + 1, POSITION + 1 + len(seqs))), seqs
    finally:
        stop.set()
        await asyncio.gather(*senders)


async def first_sync(client: RawWebSocket, conversation: str) -> list[int]:
    """The message seqs a client gets from its hello, through its sync, and 0.3 s of live
    traffic after the sync is done."""
    hello = await asyncio.wait_for(client.recv(), 10)
    assert hello is not None
    assert hello.json()["type"] == "hello"
    await client.send_json({"type": "sync", "positions": {conversation: POSITION}})
    seqs: list[int] = []
    done_at: float | None = None
    loop = asyncio.get_running_loop()
    while done_at is None or loop.time() < done_at + 0.3:
        timeout = 30 if done_at is None else max(0.01, done_at + 0.3 - loop.time())
        try:
            frame = await asyncio.wait_for(client.recv(), timeout)
        except TimeoutError:
            break
        assert frame is not None, "connection ended"
        body = frame.json()
        if body["type"] == "message":
            seqs.append(body["message"]["seq"])
        elif body["type"] == "sync_done":
            done_at = loop.time()
    assert done_at is not None
    return seqs
