"""Several gateways behind HAProxy: no stickiness, delivery across instances (drain on SIGTERM:
tests/e2e/test_drain.py).

Runs a throw-away stack of its own (`realchat stack up --gateways 2`) on free ports.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.support.client import Device, connect, create_conversation, register
from tests.support.scale_out import TwoGateways, two_gateways_stack

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def two_gateways(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TwoGateways]:
    with two_gateways_stack(tmp_path_factory.mktemp("scale-out") / "stack") as stack:
        yield stack


def received(device: Device, conversation_id: str) -> list[int]:
    """Seqs of every message a device was given (`message` frames and its own `send_ok`s), in
    arrival order, duplicates kept."""
    return [
        f["message"]["seq"]
        for f in device.frames
        if f["type"] in ("message", "send_ok")
        and f["message"]["conversation_id"] == conversation_id
    ]


def send_frame(conversation_id: str, content: str) -> dict[str, str]:
    return {
        "type": "send",
        "conversation_id": conversation_id,
        "client_msg_id": uuid.uuid4().hex,
        "content": content,
    }


async def test_clients_spread_over_instances_and_chat_across_them(
    two_gateways: TwoGateways, http: aiohttp.ClientSession
) -> None:
    status = two_gateways.status()
    assert {"gateway-1", "gateway-2", "balancer"} <= set(status)
    assert all(c["healthy"] for c in status.values()), status
    base = two_gateways.base_url
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    conversation = await create_conversation(http, base, alice, bob)
    devices = [await connect(http, base, user) for user in (alice, bob, alice, bob)]
    per_instance = [await two_gateways.active_connections(n) for n in (1, 2)]
    assert per_instance == [2.0, 2.0], "round robin puts every other connection on each instance"
    for n in range(10):
        await devices[n % 4].send(send_frame(conversation, f"m{n}"))
    for device in devices:
        await device.wait(lambda d: len(d.seen(conversation)) >= 10)
    # A last message: a late duplicate of an earlier one would arrive before it.
    await devices[0].send(send_frame(conversation, "last"))
    for device in devices:
        await device.wait(lambda d: 11 in d.seen(conversation))
        # Each seq exactly once (no dedup here); live frames in seq order (a sender's own
        # send_ok may come before lower seqs still on their way).
        assert sorted(received(device, conversation)) == list(range(1, 12))
        messages = device.seqs(conversation)
        assert messages == sorted(messages)
    for device in devices:
        await device.close()
