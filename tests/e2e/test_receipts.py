"""Acks and receipts through the real gateway: the other members' devices hear of an ack, the
acking user's own do not; a bad ack is refused; the acked cursor is where a plain `sync` resumes."""

from __future__ import annotations

import aiohttp
import pytest

from tests.e2e.conftest import RealChat
from tests.support.client import Device, barrier, connect, create_conversation, register, send_rest

pytestmark = pytest.mark.asyncio(loop_scope="session")


def receipts(device: Device) -> list[tuple[str, str, int]]:
    return [(f["conversation_id"], f["user_id"], f["seq"]) for f in device.of_type("receipt")]


async def test_receipts_reach_the_other_members_and_the_cursor_is_where_sync_resumes(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    conversation = await create_conversation(http, base, alice, bob)
    alices = [await connect(http, base, alice) for _ in range(2)]
    bobs = [await connect(http, base, bob) for _ in range(2)]
    for n in range(5):
        await send_rest(http, base, alice, conversation, f"message {n}")
    for device in alices + bobs:
        await device.wait(lambda d: d.seqs(conversation) == [1, 2, 3, 4, 5])

    # Bob's first device acks 2: both of alice's devices hear it, none of bob's.
    await bobs[0].send({"type": "ack", "conversation_id": conversation, "seq": 2})
    for device in alices:
        await device.wait(lambda d: receipts(d) == [(conversation, bob.user_id, 2)])
    # An ack that would move the cursor back is no news; the next real move is (one device's
    # frames are handled in order, so a receipt for 1 would come first).
    await bobs[0].send({"type": "ack", "conversation_id": conversation, "seq": 1})
    await bobs[0].send({"type": "ack", "conversation_id": conversation, "seq": 3})
    for device in alices:
        await device.wait(lambda d: len(receipts(d)) >= 2)
        assert receipts(device) == [(conversation, bob.user_id, 2), (conversation, bob.user_id, 3)]
        assert device.of_type("error") == []

    # Alice acks everything: bob's devices hear it; hers do not hear their own.
    await alices[0].send({"type": "ack", "conversation_id": conversation, "seq": 5})
    for device in bobs:
        await device.wait(lambda d: receipts(d) == [(conversation, alice.user_id, 5)])
    for device in alices + bobs:
        await barrier(device)
    for device in alices:
        assert [r for r in receipts(device) if r[1] == alice.user_id] == []
    for device in bobs:
        assert [r for r in receipts(device) if r[1] == bob.user_id] == []
        assert device.of_type("error") == []

    # Beyond the last seq: refused.
    await bobs[0].send({"type": "ack", "conversation_id": conversation, "seq": 6})
    await bobs[0].wait(lambda d: d.of_type("error"))
    assert [(f["code"], f.get("client_msg_id")) for f in bobs[0].of_type("error")] == [
        ("invalid_seq", None)
    ]

    # Bob's cursor is 3 (the backward ack and the refused one did not move it): a sync without
    # positions, or with `{}`, resumes there on a new device.
    for sync in ({"type": "sync"}, {"type": "sync", "positions": {}}):
        fresh = await connect(http, base, bob)
        await fresh.send(sync)
        await fresh.wait(lambda d: d.of_type("sync_done"))
        assert fresh.seqs(conversation) == [4, 5], sync
        assert fresh.of_type("sync_done")[0]["positions"] == {conversation: 5}
        await fresh.close()
    for device in alices + bobs:
        await device.close()
