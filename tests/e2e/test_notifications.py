"""Push notifications for offline users, on a throw-away stack with a notifier and a recording
push gateway (tests/support/push_gateway.py) that counts notifications by idempotency key.

What users rely on: a user whose app is closed gets one notification for a burst of messages,
within the delay and a second; a user who reads (live, or on another device before the delay
ends) gets none; mute and do-not-disturb suppress and are counted; a notifier killed mid-batch
while the push gateway is down for 30 s still sends every due notification once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from realchat.client import ClientOptions, RealChatClient
from realchat.stack.supervisor import Stack
from tests.support.client import User, create_conversation, register, send_rest
from tests.support.push_gateway import RecordingPushGateway
from tests.support.stacks import throwaway_settings
from tests.support.waiting import eventually, eventually_async

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: The notifier's delay in these tests: short, so the tests are too, but long enough for a
#: client to connect and read within it.
DELAY_S = 4.0
#: Webhook outage in the crash test (the issue's acceptance criterion).
OUTAGE_S = 30.0
SUPPRESSED = "realchat_notifier_suppressed_total"


@dataclass
class PushStack:
    stack: Stack
    gateway: RecordingPushGateway
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.stack.app_settings.http.port}"

    @property
    def ops(self) -> str:
        return f"http://127.0.0.1:{self.stack.app_settings.notifier.ops_port}"

    async def user(self, name: str, token: str | None = "phone-token") -> User:
        """A new user; with `token`, a registered push device (the app is closed)."""
        user = await register(self.http, self.base, name)
        if token is not None:
            body = {"platform": "fcm", "token": f"{token}-{uuid.uuid4().hex}"}
            async with self.http.post(f"{self.base}/v1/devices", json=body, headers=user.auth) as r:
                assert r.status == 201, await r.text()
        return user

    async def acked_seq(self, user: User, conversation: str) -> int:
        """The member's durable read position, as the notifier reads it."""
        conn = await asyncpg.connect(self.stack.postgres.dsn())
        try:
            seq = await conn.fetchval(
                "SELECT acked_seq FROM conversation_members "
                "WHERE conversation_id = $1 AND user_id = $2",
                uuid.UUID(conversation),
                uuid.UUID(user.user_id),
            )
        finally:
            await conn.close()
        return int(seq)

    async def metric(self, name: str, **labels: str) -> float:
        """The notifier's sample of `name` with exactly these labels (0 if absent)."""
        async with self.http.get(f"{self.ops}/metrics") as reply:
            text = await reply.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def push(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PushStack]:
    gateway = RecordingPushGateway()
    await gateway.start()
    settings = throwaway_settings(tmp_path_factory.mktemp("push") / "stack")
    notifier = settings.notifier.model_copy(
        update={
            "webhook_url": gateway.url,
            "delay_s": DELAY_S,
            "collapse_s": 60.0,
            "backoff_initial_s": 0.5,
            "backoff_max_s": 2.0,
            "max_attempts": 1000,
            "poll_interval_s": 0.1,
            # Longer than the test holds a call: the kill, not a timeout, must end it.
            "webhook_timeout_s": 60.0,
        }
    )
    settings = settings.model_copy(update={"notifier": notifier})
    stack = Stack(settings, report=print)
    try:
        await stack.up()
        async with aiohttp.ClientSession() as http:
            yield PushStack(stack, gateway, http)
    finally:
        await stack.down()
        await gateway.close()


async def burst(push: PushStack, sender: User, conversation: str, n: int) -> float:
    """Send `n` messages; returns when the first was sent (time.monotonic())."""
    started = time.monotonic()
    for i in range(n):
        await send_rest(push.http, push.base, sender, conversation, f"message {i}")
    return started


async def test_a_user_with_the_app_closed_gets_one_notification_for_a_burst(
    push: PushStack,
) -> None:
    alice, bob = await push.user("alice", token=None), await push.user("bob")
    conversation = await create_conversation(push.http, push.base, alice, bob)
    first_sent = await burst(push, alice, conversation, 5)

    assert await eventually(lambda: push.gateway.notifications(bob.user_id) >= 1, DELAY_S + 15)
    arrived = push.gateway.for_user(bob.user_id)[0].at - first_sent
    await asyncio.sleep(DELAY_S + 1)  # time enough for a second one, which must not come
    assert push.gateway.notifications(bob.user_id) == 1
    note = push.gateway.for_user(bob.user_id)[0].body
    assert note["conversation_id"] == conversation
    assert note["sender_id"] == alice.user_id
    assert (note["message_count"], note["first_seq"], note["last_seq"]) == (5, 1, 5)
    assert [d["platform"] for d in note["devices"]] == ["fcm"]
    assert "content" not in note
    # The sender is not notified of their own messages.
    assert push.gateway.for_user(alice.user_id) == []
    print(f"notification {arrived:.2f} s after the first message (delay {DELAY_S} s)")
    assert arrived <= DELAY_S + 1


async def test_a_user_reading_live_gets_none(push: PushStack) -> None:
    alice, carol = await push.user("alice", token=None), await push.user("carol")
    conversation = await create_conversation(push.http, push.base, alice, carol)
    acked_before = await push.metric(SUPPRESSED, reason="acked")
    reader = await RealChatClient.login(push.base, carol.username, "correct horse battery")
    async with reader:
        await reader.wait_ready(60)

        async def read_and_ack() -> None:
            async for message in reader.messages():
                await reader.ack(message.conversation_id, message.seq)

        reading = asyncio.create_task(read_and_ack())
        await burst(push, alice, conversation, 5)
        await asyncio.sleep(DELAY_S + 2)
        reading.cancel()
    assert push.gateway.for_user(carol.user_id) == []
    acked = await push.metric(SUPPRESSED, reason="acked")
    assert acked >= acked_before + 1


async def test_reading_on_another_device_before_the_delay_ends_prevents_it(
    push: PushStack,
) -> None:
    alice, dave = await push.user("alice", token=None), await push.user("dave")
    conversation = await create_conversation(push.http, push.base, alice, dave)
    await burst(push, alice, conversation, 3)
    # Dave opens the app on his laptop, catches up and reads, then closes it: the phone
    # (registered above) must stay silent.
    laptop = await RealChatClient.login(
        push.base, dave.username, "correct horse battery", options=ClientOptions()
    )
    async with laptop, asyncio.timeout(DELAY_S):
        await laptop.wait_ready()
        messages = laptop.messages()
        seen = [await anext(messages) for _ in range(3)]
        await laptop.ack(conversation, seen[-1].seq)
        last = seen[-1].seq
        read = await eventually_async(
            lambda: push.acked_seq(dave, conversation), lambda s: s >= last, DELAY_S
        )
        assert read == last
    await asyncio.sleep(DELAY_S + 2)
    assert push.gateway.for_user(dave.user_id) == []


async def test_mute_and_do_not_disturb_suppress_and_are_counted(push: PushStack) -> None:
    alice, erin, frank = (
        await push.user("alice", token=None),
        await push.user("erin"),
        await push.user("frank"),
    )
    conversation = await create_conversation(push.http, push.base, alice, erin, frank)
    muted = f"{push.base}/v1/notification-settings/muted-conversations/{conversation}"
    async with push.http.put(muted, headers=erin.auth) as r:
        assert r.status == 204, await r.text()
    settings = f"{push.base}/v1/notification-settings"
    async with push.http.patch(settings, json={"do_not_disturb": True}, headers=frank.auth) as r:
        assert r.status == 200, await r.text()
        assert await r.json() == {"do_not_disturb": True, "muted_conversation_ids": []}
    async with push.http.get(settings, headers=erin.auth) as r:
        assert (await r.json())["muted_conversation_ids"] == [conversation]
    before = {
        reason: await push.metric(SUPPRESSED, reason=reason)
        for reason in ("muted", "do_not_disturb")
    }

    await burst(push, alice, conversation, 2)

    async def counted() -> bool:
        muted_now = await push.metric(SUPPRESSED, reason="muted")
        dnd_now = await push.metric(SUPPRESSED, reason="do_not_disturb")
        return muted_now >= before["muted"] + 1 and dnd_now >= before["do_not_disturb"] + 1

    deadline = time.monotonic() + DELAY_S + 15
    while not await counted():
        assert time.monotonic() < deadline, "the suppressions were never counted"
        await asyncio.sleep(0.2)
    assert push.gateway.for_user(erin.user_id) == []
    assert push.gateway.for_user(frank.user_id) == []

    # Unmuted and DND off: the next message notifies both (after the collapse interval has
    # nothing to wait for: nothing was sent to them yet).
    async with push.http.delete(muted, headers=erin.auth) as r:
        assert r.status == 204
    async with push.http.patch(settings, json={"do_not_disturb": False}, headers=frank.auth) as r:
        assert r.status == 200
    await burst(push, alice, conversation, 1)
    assert await eventually(
        lambda: all(push.gateway.notifications(u.user_id) == 1 for u in (erin, frank)),
        DELAY_S + 15,
    )


async def test_notifier_killed_mid_batch_and_gateway_down_every_notification_once(
    push: PushStack,
) -> None:
    alice = await push.user("alice", token=None)
    users = [await push.user(f"user{n}") for n in range(5)]
    push.gateway.holding = True
    push.gateway.arrived.clear()
    for user in users:
        conversation = await create_conversation(push.http, push.base, alice, user)
        await burst(push, alice, conversation, 3)

    # The first webhook call of a batch arrives and is held: the batch is mid-way.
    await asyncio.wait_for(push.gateway.arrived.wait(), DELAY_S + 30)
    await push.stack.kill_component("notifier")
    await push.gateway.down()
    push.gateway.holding = False
    held = {r.key for r in push.gateway.received if r.answered is None}
    assert held, "the kill was meant to come while a call was held"

    await push.stack.start_component("notifier")
    outage_started = time.monotonic()
    assert await _eventually_retried(push, timeout_s=OUTAGE_S)
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
    await push.gateway.up()
    back = time.monotonic()

    def all_notified() -> bool:
        return all(push.gateway.notifications(u.user_id) >= 1 for u in users)

    assert await eventually(all_notified, 60)
    attempts = sum(len(push.gateway.for_user(u.user_id)) for u in users)
    print(
        f"all {len(users)} notified {time.monotonic() - back:.1f} s after the push gateway came "
        f"back ({len(held)} held when the notifier was killed, {attempts} requests for them)"
    )
    await asyncio.sleep(3)  # time enough for duplicates, which must not come
    for user in users:
        keys = {r.key for r in push.gateway.for_user(user.user_id)}
        assert len(keys) == 1, f"{user.username} got {len(keys)} distinct notifications"
        assert push.gateway.notifications(user.user_id) == 1
    # What was held when the notifier died went out again under the same key.
    accepted = {r.key for r in push.gateway.received if r.answered == 200}
    assert held <= accepted


async def _eventually_retried(push: PushStack, timeout_s: float) -> bool:
    """The restarted notifier has tried the webhook and failed (the gateway is down)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if await push.metric("realchat_notifier_failed_total", outcome="retried") >= 1:
                return True
        except aiohttp.ClientError:
            pass  # the notifier is still starting
        await asyncio.sleep(0.2)
    return False


async def test_devices_and_settings_through_the_public_entrypoint(push: PushStack) -> None:
    owner, other = await push.user("owner", token=None), await push.user("other", token=None)
    devices = f"{push.base}/v1/devices"
    async with push.http.post(devices, json={"platform": "bb10", "token": "t"}) as r:
        assert r.status == 401
    async with push.http.post(
        devices, json={"platform": "bb10", "token": "t"}, headers=owner.auth
    ) as r:
        assert r.status == 422
        assert (await r.json())["error"]["code"] == "invalid_platform"
    async with push.http.post(devices, data=b"{", headers=owner.auth) as r:
        assert r.status == 400
    body = {"platform": "apns", "token": f"apns-{uuid.uuid4().hex}"}
    async with push.http.post(devices, json=body, headers=owner.auth) as r:
        assert r.status == 201
        device = await r.json()
    async with push.http.post(devices, json=body, headers=owner.auth) as r:
        assert r.status == 200  # registered again: the same device
        assert (await r.json())["device_id"] == device["device_id"]
    async with push.http.get(devices, headers=owner.auth) as r:
        assert (await r.json())["devices"] == [device]
    async with push.http.get(devices, headers=other.auth) as r:
        assert (await r.json())["devices"] == []
    for who, path in ((other, device["device_id"]), (owner, "not-a-uuid")):
        async with push.http.delete(f"{devices}/{path}", headers=who.auth) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "device_not_found"
    async with push.http.delete(f"{devices}/{device['device_id']}", headers=owner.auth) as r:
        assert r.status == 204
    async with push.http.get(devices, headers=owner.auth) as r:
        assert (await r.json())["devices"] == []

    # Muting a conversation one is not in is refused as if it did not exist.
    alice = await push.user("alice", token=None)
    conversation = await create_conversation(push.http, push.base, alice)
    muted = f"{push.base}/v1/notification-settings/muted-conversations/{conversation}"
    async with push.http.put(muted, headers=owner.auth) as r:
        assert r.status == 404
        assert (await r.json())["error"]["code"] == "conversation_not_found"
    settings = f"{push.base}/v1/notification-settings"
    async with push.http.patch(settings, json={"do_not_disturb": "yes"}, headers=owner.auth) as r:
        assert r.status == 422
        assert (await r.json())["error"]["code"] == "invalid_do_not_disturb"
    async with push.http.get(settings, headers=owner.auth) as r:
        assert await r.json() == {"do_not_disturb": False, "muted_conversation_ids": []}
    async with push.http.get(f"{push.base}/v1/openapi.json") as r:
        paths = (await r.json())["paths"]
    assert {"post", "get"} <= set(paths["/v1/devices"])
    assert "patch" in paths["/v1/notification-settings"]


async def test_the_sdk_manages_devices_and_settings(push: PushStack) -> None:
    owner = await push.user("owner", token=None)
    alice = await push.user("alice", token=None)
    conversation = await create_conversation(push.http, push.base, alice, owner)
    client = await RealChatClient.login(push.base, owner.username, "correct horse battery")
    async with client:
        device = await client.register_device("webpush", f"endpoint-{uuid.uuid4().hex}")
        assert await client.devices() == [device]
        await client.set_muted(conversation, True)
        settings = await client.set_do_not_disturb(True)
        assert settings.do_not_disturb
        assert settings.muted_conversation_ids == [conversation]
        await client.set_muted(conversation, False)
        await client.unregister_device(device.device_id)
        assert await client.devices() == []
        assert (await client.notification_settings()).muted_conversation_ids == []


async def test_logging_out_drops_the_push_tokens_and_the_old_token_registers_nothing(
    push: PushStack,
) -> None:
    """A logout ends every session of the user: their devices' push tokens go too (a phone
    that was logged out must not keep getting notifications), and the revoked token cannot
    register a device again."""
    owner = await push.user("owner")  # with a registered device
    devices = f"{push.base}/v1/devices"
    async with push.http.get(devices, headers=owner.auth) as r:
        assert len((await r.json())["devices"]) == 1
    async with push.http.delete(f"{push.base}/v1/tokens", headers=owner.auth) as r:
        assert r.status in (200, 204), await r.text()
    body = {"platform": "fcm", "token": f"after-logout-{uuid.uuid4().hex}"}
    async with push.http.post(devices, json=body, headers=owner.auth) as r:
        assert r.status == 401
    credentials = {"username": owner.username, "password": "correct horse battery"}
    async with push.http.post(f"{push.base}/v1/tokens", json=credentials) as r:
        assert r.status == 200, await r.text()
        fresh = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
    async with push.http.get(devices, headers=fresh) as r:
        assert (await r.json())["devices"] == []
