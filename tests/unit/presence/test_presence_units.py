"""Pure parts of presence: key parsing, notification flags, stale-event filtering, and the
gateway heartbeat's ordering of Redis writes (with a fake registry)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from realchat.events.models import PresenceChanged
from realchat.gateway.connection import Connection
from realchat.gateway.hub import Hub, PresenceVersions
from realchat.gateway.presence import PresenceHeartbeat
from realchat.presence.registry import Device, parse_device_key
from realchat.presence.tracker import merged_notify_flags
from tests.support.waiting import eventually
from tests.unit.gateway.fakes import FakeSink


def test_device_keys_parse_and_other_keys_do_not() -> None:
    user = uuid.uuid4()
    assert parse_device_key(f"user:{user}:phone-1") == (user, "phone-1")
    assert parse_device_key(f"user:{user}:") is None
    assert parse_device_key("user:not-a-uuid-at-all-not-a-uuid-at-all:x") is None
    assert parse_device_key(f"realchat:sends:{user}:1") is None
    assert parse_device_key(f"user:{user}:a:b") is None


@pytest.mark.parametrize(
    ("current", "merged"),
    [("", "Eg$x"), ("Ex", "Exg$"), ("KEA", "KEA"), ("AK", "AKE"), ("Eg$x", "Eg$x")],
)
def test_notification_flags_keep_what_is_configured(current: str, merged: str) -> None:
    assert merged_notify_flags(current) == merged


def test_an_older_presence_version_is_dropped_and_entries_are_forgotten() -> None:
    versions = PresenceVersions(keep_s=100)
    user = uuid.uuid4()
    assert versions.advance(user, 2, now=0)
    assert not versions.advance(user, 1, now=1)  # online overtaken by the later offline
    assert not versions.advance(user, 2, now=1)  # a redelivery
    assert versions.advance(user, 3, now=2)
    versions.advance(uuid.uuid4(), 1, now=500)
    assert len(versions) == 1  # the first user's entry aged out


def presence(user: uuid.UUID, status: str, version: int, *recipients: uuid.UUID) -> PresenceChanged:
    return PresenceChanged(
        event_id=uuid.uuid4(),
        user_id=user,
        status=status,  # type: ignore[arg-type]
        version=version,
        changed_at=datetime.now(UTC),
        recipients=list(recipients),
    )


async def test_presence_frames_go_to_recipients_only_and_stale_ones_nowhere() -> None:
    hub = Hub(shards=4)
    alice, bob, carol = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    sinks = {user: FakeSink() for user in (alice, bob, carol)}
    connections = [
        Connection(u, sink, queue_size=8, close_grace_s=0.1, on_gap=lambda c, x: None)
        for u, sink in sinks.items()
    ]
    for connection in connections:
        hub.register(connection)
    assert hub.dispatch_presence(presence(alice, "offline", 2, bob)) == 1
    assert hub.dispatch_presence(presence(alice, "online", 1, bob)) is None
    await asyncio.sleep(0.01)
    assert sinks[bob].frames == [{"type": "presence", "user_id": str(alice), "status": "offline"}]
    assert sinks[carol].frames == []
    assert sinks[alice].frames == []
    for connection in connections:
        hub.unregister(connection)
        await connection.finish()


class FakeRegistry:
    """Records writes; a write can be held open to interleave sessions with it."""

    def __init__(self) -> None:
        self.log: list[tuple[list[str], list[str]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def apply(self, register: list[Device], unregister: list[Device]) -> None:
        await self.gate.wait()
        if self.fail:
            raise RedisConnectionError("redis away")
        self.log.append(([d.device for d in register], [d.device for d in unregister]))


async def test_a_disconnect_is_written_after_its_registration_never_before() -> None:
    registry = FakeRegistry()
    heartbeat = PresenceHeartbeat(registry, heartbeat_s=60)  # type: ignore[arg-type]
    user, phone, laptop = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    heartbeat.connected(phone, user, "phone")
    registry.gate.clear()
    flushing = asyncio.create_task(heartbeat.flush(refresh=False))
    await asyncio.sleep(0)  # the phone's registration is in flight, held open
    heartbeat.disconnected(phone)
    heartbeat.connected(laptop, user, "laptop")
    registry.gate.set()
    assert await flushing
    assert await heartbeat.flush(refresh=False)
    assert registry.log == [(["phone"], []), (["laptop"], ["phone"])]

    # A refresh writes only who is still here.
    assert await heartbeat.flush(refresh=True)
    assert registry.log[-1] == (["laptop"], [])


async def test_a_session_that_came_and_went_between_writes_costs_nothing() -> None:
    registry = FakeRegistry()
    heartbeat = PresenceHeartbeat(registry, heartbeat_s=60)  # type: ignore[arg-type]
    for _ in range(1000):
        session = uuid.uuid4()
        heartbeat.connected(session, uuid.uuid4(), "d")
        heartbeat.disconnected(session)
    assert heartbeat.pending == 0
    assert len(heartbeat) == 0
    assert await heartbeat.flush(refresh=False)
    assert registry.log == []


async def test_a_failed_write_is_retried_every_second_with_everything_still_wanted() -> None:
    registry = FakeRegistry()
    heartbeat = PresenceHeartbeat(registry, heartbeat_s=60)  # type: ignore[arg-type]
    stay, leave = uuid.uuid4(), uuid.uuid4()
    heartbeat.connected(leave, uuid.uuid4(), "leaving")
    assert await heartbeat.flush(refresh=False)
    registry.fail = True
    heartbeat.connected(stay, uuid.uuid4(), "staying")
    heartbeat.disconnected(leave)
    assert not await heartbeat.flush(refresh=False)
    registry.fail = False
    stop = asyncio.Event()
    run = asyncio.create_task(heartbeat.run(stop))
    assert await eventually(lambda: len(registry.log) > 1, timeout_s=5, interval_s=0.05)
    stop.set()
    await run
    assert registry.log[1] == (["staying"], ["leaving"])  # after ~1 s, not the 60 s heartbeat
