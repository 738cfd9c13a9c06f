"""The per-user send limit, on a gateway of its own with a low limit: counted across a user's
devices (and REST), refused sends are named by their client_msg_id, and exactly the sends that got
`send_ok` are stored."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import RealChat
from tests.support.client import Device, connect, create_conversation, register
from tests.support.gateways import extra_gateway
from tests.support.rest import assert_error, call

pytestmark = pytest.mark.asyncio(loop_scope="session")

SENDS_PER_S = 5


async def start_of_a_second() -> int:
    """Wait for the clock to enter a new second (the limiter counts in whole-second windows);
    return that second."""
    await asyncio.sleep(1 - time.time() % 1)
    return int(time.time())


def send_frame(conversation_id: str, client_msg_id: str) -> dict[str, str]:
    """A `send` whose content is its client_msg_id (so stored messages name their send)."""
    return {
        "type": "send",
        "conversation_id": conversation_id,
        "client_msg_id": client_msg_id,
        "content": client_msg_id,
    }


def outcomes(devices: list[Device]) -> dict[str, str]:
    """client_msg_id -> "ok" or the error code, over every reply the devices got."""
    found: dict[str, str] = {}
    for device in devices:
        for frame in device.frames:
            if frame["type"] == "send_ok":
                found[frame["client_msg_id"]] = "ok"
            elif frame["type"] == "error" and "client_msg_id" in frame:
                found[frame["client_msg_id"]] = frame["code"]
    return found


async def test_send_limit_is_per_user_across_devices_and_rest(
    realchat: RealChat, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with extra_gateway(realchat.services, tmp_path, sends_per_s=SENDS_PER_S) as gateway:
        base = gateway.base_url
        alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
        conversation = await create_conversation(http, base, alice, bob)
        alices = [await connect(http, base, alice) for _ in range(2)]
        bobs = [await connect(http, base, bob)]

        # 20 sends at once over alice's two devices, and one of bob's, in one window.
        for attempt in range(3):
            window = await start_of_a_second()
            burst = [f"a{attempt}-{n}" for n in range(20)]
            for n, client_msg_id in enumerate(burst):
                await alices[n % 2].send(send_frame(conversation, client_msg_id))
            bobs_send = f"b{attempt}"
            await bobs[0].send(send_frame(conversation, bobs_send))
            # Each send is answered on the connection that sent it: wait there (a device's
            # wait wakes on its own frames only).
            for device, sent in (
                (alices[0], burst[0::2]),
                (alices[1], burst[1::2]),
                (bobs[0], [bobs_send]),
            ):
                await device.wait(lambda d, w=set(sent): w <= set(outcomes([d])))
            if int(time.time()) == window:
                break  # else the burst straddled two windows: try again, in a fresh second
        else:
            pytest.fail("three bursts of 21 sends each took longer than their second")

        got = outcomes(alices + bobs)
        accepted = [c for c in burst if got[c] == "ok"]
        assert len(accepted) == SENDS_PER_S, got
        assert {got[c] for c in burst if c not in accepted} == {"rate_limited"}, got
        assert got[bobs_send] == "ok", "bob is limited by alice's sends"
        for frame in (f for d in alices for f in d.of_type("error")):
            assert frame["message"]

        # Stored are exactly the sends that got send_ok (their content is their client_msg_id).
        status, page = await call(
            http,
            "GET",
            f"{base}/v1/conversations/{conversation}/messages?limit=500",
            headers=alice.auth,
        )
        assert status == 200
        stored = [m["content"] for m in page["messages"]]
        all_ok = [c for c, outcome in got.items() if outcome == "ok"]
        assert sorted(stored) == sorted(all_ok)
        assert len(stored) == len(set(stored))

        # REST counts against the same limit: the sixth send of a second is 429.
        url = f"{base}/v1/conversations/{conversation}/messages"
        for attempt in range(3):
            window = await start_of_a_second()
            replies = [
                await call(
                    http,
                    "POST",
                    url,
                    json={"client_msg_id": f"r{attempt}-{n}", "content": "rest"},
                    headers=alice.auth,
                )
                for n in range(SENDS_PER_S + 2)
            ]
            if int(time.time()) == window:
                break
        else:
            pytest.fail("three bursts of REST sends each took longer than their second")
        assert [status for status, _ in replies[:SENDS_PER_S]] == [201] * SENDS_PER_S, replies
        for reply in replies[SENDS_PER_S:]:
            assert_error(reply, 429, "rate_limited")

        for device in alices + bobs:
            await device.close()
