"""Black-box checks of the compose deployment, through its public port only (the balancer in
front of three gateways), as an outside client sees it: the contract, every device, sync after
being offline, authorization, a slow consumer, and a gateway container killed mid-traffic."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest

from realchat.client import ClientOptions, Message, RealChatClient
from tests.compose.conftest import Deployment
from tests.support.client import PASSWORD, connect, create_conversation, register, send_rest
from tests.support.rawws import OP_CLOSE, OP_TEXT, RawWebSocket

pytestmark = [pytest.mark.compose, pytest.mark.asyncio(loop_scope="session")]

OPTIONS = ClientOptions(reconnect_initial_s=0.2, reconnect_max_s=2.0)


async def account(deployment: Deployment, name: str) -> str:
    username = f"{name}_{uuid.uuid4().hex[:8]}"
    await RealChatClient.register(deployment.base_url, username, PASSWORD)
    return username


async def login(
    deployment: Deployment, username: str, positions: dict[str, int] | None = None
) -> RealChatClient:
    return await RealChatClient.login(
        deployment.base_url, username, PASSWORD, options=OPTIONS, positions=positions
    )


async def take(client: RealChatClient, n: int, timeout_s: float = 60) -> list[Message]:
    stream = client.messages()
    async with asyncio.timeout(timeout_s):
        return [await anext(stream) for _ in range(n)]


async def test_every_device_gets_every_message_once_in_order(deployment: Deployment) -> None:
    async with aiohttp.ClientSession() as http:
        alice = await register(http, deployment.base_url, "alice")
        bob = await register(http, deployment.base_url, "bob")
        conversation = await create_conversation(http, deployment.base_url, alice, bob)
        devices = [
            await connect(http, deployment.base_url, user, device=name)
            for user, name in ((alice, "phone"), (alice, "laptop"), (bob, "phone"))
        ]
        for device in devices:
            await device.send({"type": "sync", "positions": {conversation: 0}})
        for n in range(20):
            for sender in (devices[0], devices[2]):
                frame = {
                    "type": "send",
                    "conversation_id": conversation,
                    "client_msg_id": uuid.uuid4().hex,
                    "content": f"#{n}",
                }
                await sender.send(frame)
        for device in devices:
            await device.wait(lambda d: len(d.seen(conversation)) >= 40, timeout_s=60)
            # Every message once (a sender's own come as send_ok replies, which may arrive
            # after later messages), and `message` frames in increasing seq order.
            assert sorted(device.seen(conversation)) == list(range(1, 41))
            delivered = device.seqs(conversation)
            assert delivered == sorted(set(delivered))
        for device in devices:
            await device.close()
    deployment.figures["every_device"] = {"devices": 3, "messages": 40}


async def test_an_offline_device_catches_up_with_sync(deployment: Deployment) -> None:
    alice = await login(deployment, await account(deployment, "alice"))
    bob_name = await account(deployment, "bob")
    async with alice:
        bob = await login(deployment, bob_name)
        async with bob:
            await asyncio.gather(alice.wait_ready(60), bob.wait_ready(60))
            assert bob.user_id is not None
            created = await alice.create_conversation([bob.user_id], "offline")
            conversation = created.conversation_id
            first = await alice.send(conversation, "before")
            assert [m.message_id for m in await take(bob, 1)] == [first.message_id]
            positions = bob.positions()
        # Bob is offline: these are stored, and wait for his next sync.
        while_away = [await alice.send(conversation, f"while away {n}") for n in range(10)]
        started = time.monotonic()
        bob = await login(deployment, bob_name, positions=positions)
        async with bob:
            caught_up = await take(bob, len(while_away))
    assert [m.message_id for m in caught_up] == [m.message_id for m in while_away]
    assert [m.seq for m in caught_up] == list(range(2, 12))
    deployment.figures["sync_after_offline"] = {
        "messages": len(while_away),
        "caught_up_s": round(time.monotonic() - started, 2),
    }


async def test_outsiders_and_bad_tokens_are_refused(deployment: Deployment) -> None:
    base = deployment.base_url
    async with aiohttp.ClientSession() as http:
        alice = await register(http, base, "alice")
        bob = await register(http, base, "bob")
        mallory = await register(http, base, "mallory")
        conversation = await create_conversation(http, base, alice, bob)
        url = f"{base}/v1/conversations/{conversation}/messages"
        async with http.get(url, headers=mallory.auth) as history:
            assert history.status in (403, 404), await history.text()
        body = {"client_msg_id": uuid.uuid4().hex, "content": "let me in"}
        async with http.post(url, json=body, headers=mallory.auth) as sent:
            assert sent.status in (403, 404), await sent.text()
        async with http.get(url, headers={"Authorization": "Bearer not-a-token"}) as bad:
            assert bad.status == 401
        device = await connect(http, base, mallory)
        await device.send({"type": "sync", "positions": {conversation: 0}})
        await device.wait(lambda d: d.of_type("error"), timeout_s=30)
        assert device.of_type("error")[0]["code"] == "not_a_member"
        assert device.of_type("message") == []
        await device.close()
        refused = await RawWebSocket.connect(f"{base}/v1/ws?token=not-a-token")
        frame = await refused.recv()
        assert frame is not None
        assert frame.close_code == 4001
        refused.close()
    deployment.figures["authorization"] = {"outsider": "refused", "bad_token": "4001 / 401"}


async def test_a_stalled_client_is_cut_off_and_a_reading_one_gets_everything(
    deployment: Deployment,
) -> None:
    """Big messages to a group with a client that never reads (tiny receive buffer), connected
    straight to a gateway container (through the balancer and docker-proxy, their buffers would
    hide tens of MiB first): the gateway cuts it off (4008, or the connection ends) once its
    bounded queue is full; a member reading through the balancer meanwhile gets every message
    in order."""
    base = deployment.base_url
    count, senders_n = 500, 6
    async with aiohttp.ClientSession() as http:
        senders = [await register(http, base, f"sender{n}") for n in range(senders_n)]
        reader_user = await register(http, base, "reader")
        stalled_user = await register(http, base, "stalled")
        conversation = await create_conversation(
            http, base, senders[0], *senders[1:], reader_user, stalled_user
        )
        reader = await connect(http, base, reader_user)
        await reader.send({"type": "sync", "positions": {conversation: 0}})
        gateway = deployment.address_of(deployment.containers("gateway")[0])
        stalled = await RawWebSocket.connect(
            f"ws://{gateway}:8080/v1/ws?token={stalled_user.token}", rcvbuf=4096, mss=536
        )
        hello = await stalled.recv()
        assert hello is not None
        assert hello.opcode == OP_TEXT
        big = "\U0001f600" * 3990  # ~16 KiB per frame
        for n in range(count):  # over REST: the senders receive nothing back
            await send_rest(http, base, senders[n % senders_n], conversation, f"{n:04d} {big}")
            await asyncio.sleep(1 / 100)  # under every sender's per-user rate limit
        await reader.wait(lambda d: len(d.seqs(conversation)) >= count, timeout_s=120)
        assert reader.seqs(conversation) == list(range(1, count + 1))
        ending = await _drain_until_closed(stalled, timeout_s=60)
        stalled.close()
        await reader.close()
    assert ending in (4008, None), ending  # 4008, or cut before its close frame could pass
    deployment.figures["slow_consumer"] = {
        "messages": count,
        "frame_kib": 16,
        "stalled_client_end": "close 4008" if ending == 4008 else "connection ended",
    }


async def _drain_until_closed(client: RawWebSocket, timeout_s: float) -> int | None:
    """Reads (now) until the server ends the connection: its close code, None if it just
    ended. Fails if the connection is still open after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                frame = await client.recv()
            except ConnectionResetError:
                return None
            if frame is None:
                return None
            if frame.opcode == OP_CLOSE:
                return frame.close_code


async def test_a_killed_gateway_loses_nothing(deployment: Deployment) -> None:
    """Six clients spread over the three gateways by the balancer send steadily; one gateway
    container is SIGKILLed: its clients reconnect through the balancer to the others and sync,
    and every client ends with every message of the conversation once, in order."""
    names = [await account(deployment, f"user{n}") for n in range(6)]
    clients = [await login(deployment, name) for name in names]
    for c in clients:
        await c.start()
    try:
        await asyncio.gather(*(c.wait_ready(60) for c in clients))
        ids = [c.user_id for c in clients]
        assert all(ids)
        conversation = (
            await clients[0].create_conversation([i for i in ids[1:] if i], "failover")
        ).conversation_id
        gateways = deployment.containers("gateway")
        assert len(gateways) == 3, gateways
        sent: list[str] = []

        async def send_steadily(c: RealChatClient, rounds: int) -> None:
            for n in range(rounds):
                sent.append((await c.send(conversation, f"{n}")).message_id)
                await asyncio.sleep(0.1)

        traffic = asyncio.gather(*(send_steadily(c, 30) for c in clients))
        await asyncio.sleep(1.0)
        killed_at = time.monotonic()
        deployment.kill(gateways[0])
        await traffic
        sent_by_end = len(sent)
        received = await asyncio.gather(*(take(c, sent_by_end, timeout_s=120) for c in clients))
        settled_s = time.monotonic() - killed_at
        history = await clients[0].history(conversation, 0, 500)
    finally:
        for c in clients:
            await c.close()
    assert sorted(m.message_id for m in history.messages) == sorted(sent)
    assert [m.seq for m in history.messages] == list(range(1, sent_by_end + 1))
    for got in received:
        assert [m.seq for m in got] == list(range(1, sent_by_end + 1))
    deployment.figures["gateway_killed"] = {
        "clients": len(clients),
        "messages": sent_by_end,
        "all_delivered_in_order_s_after_kill": round(settled_s, 2),
    }
