"""Presence through the real stack: device keys written by the gateway, transitions announced by
the presence service through the outbox and Kafka, `presence` frames to the users who share a
conversation, and `GET /v1/presence`. Timings are the test stack's (heartbeat 1 s, TTL 3 s)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import aiohttp
import msgspec
import pytest

from realchat.contract import rest
from realchat.events.models import PresenceChanged
from realchat.events.topics import PRESENCE_OFFLINE, PRESENCE_ONLINE
from tests.e2e.conftest import RealChat
from tests.support.client import Device, User, connect, create_conversation, register
from tests.support.rest import assert_error, call
from tests.support.topics import TopicTail

pytestmark = pytest.mark.asyncio(loop_scope="session")


def presence_of(device: Device, user: User) -> list[str]:
    return [f["status"] for f in device.of_type("presence") if f["user_id"] == user.user_id]


class PresenceTail:
    """Both presence topics since the test started, for one user."""

    def __init__(self, realchat: RealChat) -> None:
        bootstrap = realchat.services.kafka.bootstrap_servers
        self._tails = [TopicTail(bootstrap, t) for t in (PRESENCE_ONLINE, PRESENCE_OFFLINE)]

    def of(self, user: User) -> list[PresenceChanged]:
        events = [
            r.event
            for tail in self._tails
            for r in tail.read(until=10**9, timeout_s=0.5)
            if isinstance(r.event, PresenceChanged) and str(r.event.user_id) == user.user_id
        ]
        return sorted(events, key=lambda e: e.version)

    def close(self) -> None:
        for tail in self._tails:
            tail.close()


def seconds_after(moment: float, changed_at: datetime) -> float:
    return changed_at.timestamp() - moment


async def presence_rest(
    http: aiohttp.ClientSession, base: str, viewer: User, *users: User
) -> dict[str, str]:
    ids = ",".join(u.user_id for u in users)
    url = f"{base}/v1/presence?user_ids={ids}"
    status, body = await call(http, "GET", url, headers=viewer.auth)
    assert status == 200, body
    msgspec.convert(body, rest.Presences)  # the documented (OpenAPI) shape
    return {u["user_id"]: u["status"] for u in body["users"]}


async def test_first_device_online_last_device_offline_once_each(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice, bob, carol = [await register(http, base, n) for n in ("alice", "bob", "carol")]
    await create_conversation(http, base, alice, bob)
    await create_conversation(http, base, bob, carol)
    tail = PresenceTail(realchat)
    bobs = await connect(http, base, bob)
    carols = await connect(http, base, carol)
    try:
        connected_at = time.time()
        phone = await connect(http, base, alice, device="phone")
        await bobs.wait(lambda d: presence_of(d, alice) == ["online"], timeout_s=15)
        frame_after = time.time() - connected_at

        laptop = await connect(http, base, alice, device="laptop")
        await phone.close()
        assert await presence_rest(http, base, bob, alice) == {alice.user_id: "online"}
        closed_at = time.time()
        await laptop.close()
        await bobs.wait(lambda d: presence_of(d, alice) == ["online", "offline"], timeout_s=15)

        events = tail.of(alice)
        assert [(e.status, e.version) for e in events] == [("online", 1), ("offline", 2)]
        online, offline = events
        print(
            f"presence: online announced {seconds_after(connected_at, online.changed_at):.3f} s "
            f"after connect (frame at bob after {frame_after:.3f} s), offline announced "
            f"{seconds_after(closed_at, offline.changed_at):.3f} s after the last close"
        )
        assert seconds_after(connected_at, online.changed_at) < 1.0
        assert seconds_after(closed_at, offline.changed_at) < 1.0
        # Recipients are who shared a conversation at the time: bob, not carol.
        assert [str(u) for u in online.recipients] == [bob.user_id]
        assert presence_of(carols, alice) == []
        # Bob and carol share a conversation: each was told of the other coming online.
        await carols.wait(lambda d: presence_of(d, bob) == ["online"], timeout_s=15)
        assert await presence_rest(http, base, bob, alice) == {alice.user_id: "offline"}
    finally:
        await bobs.close()
        await carols.close()
        tail.close()


async def test_presence_never_leaks_to_users_sharing_no_conversation(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice, bob, mallory = [await register(http, base, n) for n in ("alice", "bob", "mallory")]
    await create_conversation(http, base, alice, bob)
    bobs = await connect(http, base, bob)
    malloris = await connect(http, base, mallory)
    alices = await connect(http, base, alice)
    try:
        await bobs.wait(lambda d: presence_of(d, alice) == ["online"], timeout_s=15)
        # Mallory asks about alice and bob: both left out, like an id that names nobody.
        assert await presence_rest(http, base, mallory, alice, bob) == {}
        assert await presence_rest(http, base, mallory, mallory) == {mallory.user_id: "online"}
        assert await presence_rest(http, base, bob, alice, mallory) == {alice.user_id: "online"}
        await alices.close()
        await bobs.wait(lambda d: presence_of(d, alice) == ["online", "offline"], timeout_s=15)
        # The frames went to bob only: mallory heard nothing of alice or bob.
        assert malloris.of_type("presence") == []
    finally:
        await bobs.close()
        await malloris.close()


async def test_presence_requests_are_validated(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice = await register(http, base, "alice")
    url = f"{base}/v1/presence"
    auth = alice.auth
    assert_error(await call(http, "GET", url, headers=auth), 422, "invalid_user_ids")
    assert_error(
        await call(http, "GET", f"{url}?user_ids=,", headers=auth), 422, "invalid_user_ids"
    )
    assert_error(
        await call(http, "GET", f"{url}?user_ids=nope", headers=auth), 422, "invalid_user_id"
    )
    many = ",".join(str(uuid.uuid4()) for _ in range(101))
    assert_error(
        await call(http, "GET", f"{url}?user_ids={many}", headers=auth), 422, "invalid_user_ids"
    )
    assert_error(await call(http, "GET", f"{url}?user_ids={alice.user_id}"), 401, "unauthorized")
    for device in ("a%20b", "phone%0A", ""):  # a trailing newline is not a device id either
        async with http.get(f"{base}/v1/ws?token={alice.token}&device={device}") as reply:
            assert reply.status == 400, device
            assert (await reply.json())["error"]["code"] == "invalid_device"
