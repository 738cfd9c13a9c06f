"""Delivery through the real gateway: every device, once, in order; catch-up after being
offline; a sync racing live traffic."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import RealChat
from tests.support.client import Device, connect, create_conversation, register, send_rest
from tests.support.gateways import extra_gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Messages published while a gateway is down, in the restart test.
BACKLOG = 300
CREATED_CONSUMED = 'realchat_gateway_events_consumed_total{topic="chat.message.created.v1"}'


async def test_every_device_gets_every_message_once_in_order(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    conversation = await create_conversation(http, base, alice, bob)
    devices = {
        name: [await connect(http, base, user) for _ in range(3)]
        for name, user in (("alice", alice), ("bob", bob))
    }
    senders = [devices["alice"][0], devices["bob"][1], devices["alice"][2]]
    for n in range(30):
        device = senders[n % 3]
        await device.send(
            {"type": "send", "conversation_id": conversation,
             "client_msg_id": uuid.uuid4().hex, "content": f"message {n}"}
        )  # fmt: skip
    everyone = [d for ds in devices.values() for d in ds]
    for device in everyone:
        await device.wait(lambda d: len(d.seen(conversation)) >= 30)
    await asyncio.sleep(0.5)  # anything extra (a duplicate) would arrive now
    for device in everyone:
        received = device.seqs(conversation)
        assert received == sorted(received), "message frames out of order"
        assert len(received) == len(set(received)), "a message frame arrived twice"
        # send_ok replies come straight back, ahead of earlier messages still on their way.
        assert sorted(device.seen(conversation)) == list(range(1, 31))
        own = {f["message"]["seq"] for f in device.of_type("send_ok")}
        assert own.isdisjoint(received), "a device got the echo of its own send"
        assert len(own) + len(received) == 30
    for device in everyone:
        await device.close()


async def test_offline_member_catches_up_with_sync_then_gets_live_messages(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    conversation = await create_conversation(http, base, alice, bob)
    for n in range(100):
        await send_rest(http, base, alice, conversation, f"while bob was away {n}")
    bob_device = await connect(http, base, bob)
    await bob_device.send({"type": "sync"})  # from bob's acknowledged positions (none yet)
    await bob_device.wait(lambda d: d.of_type("sync_done"))
    # Live events of the last sends may reach the new connection before its sync (the
    # publisher can still be catching up); the sync then sends 1..100 in order regardless.
    before_sync = bob_device.seqs(conversation)
    assert before_sync[-100:] == list(range(1, 101))
    assert set(before_sync) == set(range(1, 101))
    assert bob_device.of_type("sync_done")[0]["positions"] == {conversation: 100}
    for n in range(5):
        await send_rest(http, base, alice, conversation, f"live {n}")
    await bob_device.wait(lambda d: len(d.seqs(conversation)) >= len(before_sync) + 5)
    assert bob_device.seqs(conversation)[len(before_sync) :] == list(range(101, 106))
    await bob_device.close()


async def test_sync_from_zero_racing_live_traffic_is_contiguous(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    conversation = await create_conversation(http, base, alice, bob)
    writer = await connect(http, base, alice)

    async def send(n: int) -> None:
        await writer.send(
            {"type": "send", "conversation_id": conversation,
             "client_msg_id": f"m{n}", "content": f"history {n}"}
        )  # fmt: skip

    gate = asyncio.Semaphore(16)

    async def prefill(n: int) -> None:  # REST: a WebSocket would (rightly) be cut for flooding
        async with gate:
            await send_rest(http, base, alice, conversation, f"history {n}")

    await asyncio.gather(*(prefill(n) for n in range(2000)))

    stop = asyncio.Event()

    async def live_traffic() -> int:
        n = 2000
        while not stop.is_set():  # 20 messages/s
            await send(n)
            n += 1
            await asyncio.sleep(0.05)
        return n

    traffic = asyncio.create_task(live_traffic())
    await asyncio.sleep(0.3)
    reader: Device = await connect(http, base, bob)
    await reader.send({"type": "sync", "positions": {conversation: 0}})
    await reader.wait(lambda d: d.of_type("sync_done"), timeout_s=120)
    await asyncio.sleep(1.0)  # live messages keep arriving after the sync
    stop.set()
    total = await traffic
    await reader.wait(lambda d: d.seqs(conversation)[-1:] == [total], timeout_s=30)
    seqs = reader.seqs(conversation)
    # A live frame may slip in between the hello and the sync; from the sync on, 1..N exactly.
    from_sync = seqs[seqs.index(1) :]
    assert from_sync == list(range(1, total + 1))
    assert len(seqs) - len(from_sync) <= 2
    assert total > 2000
    await reader.close()
    await writer.close()


async def test_a_restarted_gateway_skips_its_backlog_and_delivers_live_events_at_once(
    realchat: RealChat, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A gateway restarted with the same instance id (same consumer group) after traffic it
    missed: ready at once, not replaying that backlog through its consumer; its new client
    gets live events promptly and finds the backlog through sync."""
    base = realchat.base_url
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    conversation = await create_conversation(http, base, alice, bob)
    instance = f"restart-{uuid.uuid4().hex[:8]}"
    async with extra_gateway(realchat.services, tmp_path, instance_id=instance) as first:
        device = await connect(http, first.base_url, bob)
        await send_rest(http, base, alice, conversation, "before")
        await device.wait(lambda d: d.seqs(conversation) == [1])
        await device.close()
    # Stopped (its offsets committed); the cluster goes on without it. Alice's device on the
    # other gateway shows when all of it is through Kafka.
    watcher = await connect(http, base, alice)
    for chunk in range(BACKLOG // 20):
        await asyncio.gather(
            *(send_rest(http, base, alice, conversation, f"missed {chunk}.{n}") for n in range(20))
        )
    await watcher.wait(lambda d: BACKLOG + 1 in d.seqs(conversation), timeout_s=60)
    await watcher.close()
    started = time.monotonic()
    async with extra_gateway(realchat.services, tmp_path, instance_id=instance) as second:
        ready_s = time.monotonic() - started
        device = await connect(http, second.base_url, bob)
        sent_at = time.monotonic()
        live = await send_rest(http, base, alice, conversation, "live")
        await device.wait(lambda d: live["seq"] in d.seqs(conversation), timeout_s=30)
        live_s = time.monotonic() - sent_at
        consumed = (await second.metrics(http)).get(CREATED_CONSUMED, 0.0)
        await device.send({"type": "sync", "positions": {conversation: 0}})
        await device.wait(lambda d: d.of_type("sync_done"))
        await device.close()
    print(f"\nready {ready_s:.2f} s after start; live event after {live_s:.3f} s")
    print(f"message events consumed by the restarted gateway: {consumed:.0f} (backlog {BACKLOG})")
    assert live["seq"] == BACKLOG + 2
    # Only what was published after it started (the live one), never the backlog.
    assert consumed < BACKLOG / 10
    assert live_s < 5, "a live event waits behind nothing"
    # The sync gives everything: the live event first, then 1..N in order once each.
    assert device.seqs(conversation) == [live["seq"], *range(1, live["seq"] + 1)]
