"""Edits, deletes and renames through the real stack: only the sender changes a message, each
change is versioned and idempotent, reaches every device after the message it changes, and a
device that syncs later gets the current state (tombstones without content, no seq gap)."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import RealChat
from tests.support.client import (
    Device,
    User,
    barrier,
    connect,
    create_conversation,
    register,
    send_rest,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def call(
    http: aiohttp.ClientSession, method: str, url: str, user: User, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers=user.auth) as reply:
        return reply.status, await reply.json()


async def edit(
    http: aiohttp.ClientSession, base: str, user: User, conversation: str, seq: int, content: str,
    change_id: str | None = None,
) -> tuple[int, Any]:  # fmt: skip
    body = {"client_change_id": change_id or uuid.uuid4().hex, "content": content}
    url = f"{base}/v1/conversations/{conversation}/messages/{seq}"
    return await call(http, "PATCH", url, user, body)


async def delete(
    http: aiohttp.ClientSession, base: str, user: User, conversation: str, seq: int
) -> tuple[int, Any]:
    return await call(
        http, "DELETE", f"{base}/v1/conversations/{conversation}/messages/{seq}", user
    )


async def history(
    http: aiohttp.ClientSession, base: str, user: User, conversation: str
) -> dict[int, tuple[int, str, bool]]:
    url = f"{base}/v1/conversations/{conversation}/messages?limit=500"
    status, body = await call(http, "GET", url, user)
    assert status == 200, body
    return {
        m["seq"]: (m.get("version", 1), m["content"], m.get("deleted", False))
        for m in body["messages"]
    }


def folded(device: Device, conversation: str) -> dict[int, tuple[int, str, bool]]:
    """What a client holds after applying its frames by the contract's rules; asserts that no
    change came before its message."""
    state: dict[int, tuple[int, str, bool]] = {}
    for frame in device.frames:
        if frame["type"] not in ("message", "message_update"):
            continue
        m = frame["message"]
        if m["conversation_id"] != conversation:
            continue
        seen = (m.get("version", 1), m["content"], m.get("deleted", False))
        if frame["type"] == "message_update":
            assert m["seq"] in state, f"the change of {m['seq']} overtook its message"
        if m["seq"] not in state or state[m["seq"]][0] < seen[0]:
            state[m["seq"]] = seen
    return state


async def test_edit_delete_and_rename_rules_and_delivery(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    eve = await register(http, base, "eve")
    conversation = await create_conversation(http, base, alice, bob)
    bobs = await connect(http, base, bob)
    await bobs.send({"type": "sync"})
    await bobs.wait(lambda d: d.of_type("sync_done"))
    for n in range(3):
        await send_rest(http, base, alice, conversation, f"message {n + 1}")

    status, edited = await edit(http, base, alice, conversation, 2, "message 2, fixed", "e-1")
    assert status == 200, edited
    assert (edited["seq"], edited["version"], edited["content"]) == (2, 2, "message 2, fixed")
    # The same edit again: the same result, nothing written; its id for another edit: refused.
    assert await edit(http, base, alice, conversation, 2, "message 2, fixed", "e-1") == (
        200,
        edited,
    )
    status, body = await edit(http, base, alice, conversation, 2, "something else", "e-1")
    assert (status, body["error"]["code"]) == (409, "idempotency_conflict")
    status, tombstone = await delete(http, base, alice, conversation, 3)
    assert status == 200, tombstone
    assert (tombstone["seq"], tombstone["version"], tombstone["content"]) == (3, 2, "")
    assert tombstone["deleted"] is True
    assert await delete(http, base, alice, conversation, 3) == (200, tombstone)  # idempotent
    for refused, code in [
        (await edit(http, base, alice, conversation, 3, "back from the dead"), "message_deleted"),
        (await edit(http, base, bob, conversation, 1, "not mine"), "not_the_sender"),
        (await delete(http, base, bob, conversation, 1), "not_the_sender"),
        (await edit(http, base, eve, conversation, 1, "outsider"), "not_a_member"),
        (await edit(http, base, alice, conversation, 9, "nothing there"), "message_not_found"),
    ]:
        assert refused[1]["error"]["code"] == code, refused
    status, renamed = await call(
        http, "PATCH", f"{base}/v1/conversations/{conversation}", alice, {"title": "renamed"}
    )
    assert (status, renamed["title"]) == (200, "renamed")

    want = {1: (1, "message 1", False), 2: (2, "message 2, fixed", False), 3: (2, "", True)}
    assert await history(http, base, alice, conversation) == want
    await bobs.wait(lambda d: d.of_type("conversation_update"))
    await barrier(bobs)
    assert folded(bobs, conversation) == want
    assert [f["type"] for f in bobs.frames if f["type"] not in ("pong",)][-3:] == [
        "message_update",
        "message_update",
        "conversation_update",
    ]
    assert bobs.of_type("conversation_update") == [
        {"type": "conversation_update", "conversation_id": conversation, "title": "renamed",
         "by": alice.user_id}
    ]  # fmt: skip
    # A device that syncs now gets the current state: no gap, the tombstone without content.
    later = await connect(http, base, bob)
    await later.send({"type": "sync", "positions": {conversation: 0}})
    await later.wait(lambda d: d.of_type("sync_done"))
    assert later.seqs(conversation) == [1, 2, 3]
    assert folded(later, conversation) == want
    status, listed = await call(http, "GET", f"{base}/v1/conversations", bob)
    assert [(c["title"], c["unread_count"]) for c in listed["conversations"]] == [("renamed", 2)]
    for device in (bobs, later):
        assert device.of_type("error") == []
        await device.close()


async def test_changes_under_concurrent_sends_end_in_the_same_state_everywhere(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    """Two senders send and change their own messages at once; devices that are there all
    along and one that syncs midway all end with what `GET .../messages` says, and no change
    ever came before its message."""
    base = realchat.base_url
    rng = random.Random(23)
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    conversation = await create_conversation(http, base, alice, bob)
    devices = [await connect(http, base, u) for u in (alice, alice, bob, bob)]
    for device in devices:
        await device.send({"type": "sync"})
        await device.wait(lambda d: d.of_type("sync_done"))

    async def author(user: User, seed: int) -> None:
        mine: list[int] = []
        rand = random.Random(seed)
        for n in range(30):
            sent = await send_rest(http, base, user, conversation, f"{user.username} {n}")
            mine.append(sent["seq"])
            if rand.random() < 0.5:
                seq = rand.choice(mine)
                if rand.random() < 0.7:
                    status, body = await edit(http, base, user, conversation, seq, f"edit {n}")
                    assert status in (200, 409), body  # 409: deleted meanwhile
                else:
                    status, body = await delete(http, base, user, conversation, seq)
                    assert status == 200, body

    async def late_device() -> Device:
        await asyncio.sleep(rng.uniform(0.05, 0.3))  # joins while the authors are busy
        device = await connect(http, base, bob)
        await device.send({"type": "sync", "positions": {conversation: 0}})
        return device

    late, *_ = await asyncio.gather(late_device(), author(alice, 1), author(bob, 2))
    want = await history(http, base, alice, conversation)
    assert sorted(want) == list(range(1, 61))
    for device in [*devices, late]:
        await device.wait(lambda d: folded(d, conversation) == want)
        assert device.of_type("error") == []
        await device.close()


async def test_a_returning_device_catches_up_on_changes_to_what_it_had(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    """Edits and deletes made while a device was away, of messages at or before its position,
    come after its next sync as `message_update`s (it names the change counter of its last
    `sync_done`); it ends with what `GET .../messages` says."""
    base = realchat.base_url
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    conversation = await create_conversation(http, base, alice, bob)
    # Alice's device hears every event: once it has, no event still on its way through the
    # bus can reach bob's devices live and blur what their syncs brought.
    watcher = await connect(http, base, alice)
    await watcher.send({"type": "sync"})
    await watcher.wait(lambda d: d.of_type("sync_done"))
    for n in range(3):
        await send_rest(http, base, alice, conversation, f"message {n + 1}")
    await edit(http, base, alice, conversation, 3, "message 3, fixed")
    await watcher.wait(lambda d: len(d.of_type("message_update")) == 1)
    first = await connect(http, base, bob)
    await first.send({"type": "sync", "positions": {conversation: 0}})
    await first.wait(lambda d: d.of_type("sync_done"))
    (done,) = first.of_type("sync_done")
    assert done == {
        "type": "sync_done",
        "positions": {conversation: 3},
        "changes": {conversation: 1},
    }
    held = folded(first, conversation)
    await first.close()

    # Away: message 1 edited, 2 deleted, 4 sent.
    await edit(http, base, alice, conversation, 1, "message 1, fixed")
    await delete(http, base, alice, conversation, 2)
    await send_rest(http, base, alice, conversation, "message 4")
    await watcher.wait(
        lambda d: len(d.of_type("message_update")) == 3 and d.seqs(conversation) == [1, 2, 3, 4]
    )
    back = await connect(http, base, bob)
    back.frames.extend(f for f in first.frames if f["type"] == "message")  # what it holds
    await back.send({"type": "sync", "positions": {conversation: 3}, "changes": done["changes"]})
    await back.wait(lambda d: d.of_type("sync_done"))
    updates = [f["message"]["seq"] for f in back.of_type("message_update")]
    assert sorted(updates) == [1, 2]  # the edit of 3 was before the counter it named
    assert back.of_type("sync_done")[0]["changes"] == {conversation: 3}
    want = await history(http, base, alice, conversation)
    assert held != want
    assert folded(back, conversation) == want
    await back.close()
    await watcher.close()
