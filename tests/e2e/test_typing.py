"""Typing indicators through the real gateway: the members' connected devices hear them (the
typist's other devices too, not the typing one), non-members are refused with an error frame and
stay connected, bursts are limited, and nothing of it is written to PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import asyncpg
import pytest

from tests.e2e.conftest import RealChat
from tests.support.client import Device, User, barrier, connect, create_conversation, register

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: The acceptance's bound for a typing line to appear elsewhere (a liveness bound, generous for
#: a busy machine only in that the median matters: each delivery is checked against it).
DELIVERY_BOUND_S = 0.2


#: The outbox's deleted rows, read beside the per-table counts (housekeeping, not clients).
OUTBOX_DELETES = "outbox deletes"

#: An idle PostgreSQL backend reports its statistics within this long (PGSTAT_IDLE_INTERVAL).
STATS_IDLE_FLUSH_S = 10.0


def typing_of(device: Device) -> list[tuple[str, str, bool]]:
    return [(f["conversation_id"], f["user_id"], f["typing"]) for f in device.of_type("typing")]


async def writes(realchat: RealChat) -> int:
    """Rows inserted, updated or deleted in RealChat's tables so far, less the outbox rows the
    publisher's housekeeping deletes (published ones past their retention: it runs every 30 s
    whatever clients do). Not the database-wide count: autovacuum's ANALYZE writes the system
    catalogs (pg_statistic) whenever it likes, which a CI run caught as 4 phantom writes."""
    tables = await table_writes(realchat)
    deleted_by_housekeeping = tables.pop(OUTBOX_DELETES, 0)
    return sum(tables.values()) - deleted_by_housekeeping


async def online(http: aiohttp.ClientSession, base: str, users: list[User]) -> None:
    """Until the presence service has written every user's device online (those are writes of
    their own, made as the devices connected, that must not fall into the measured window)."""
    for user in users:
        url = f"{base}/v1/presence?user_ids={user.user_id}"
        while True:
            async with http.get(url, headers=user.auth) as reply:
                statuses = [u["status"] for u in (await reply.json())["users"]]
            if statuses == ["online"]:
                break
            await asyncio.sleep(0.1)


async def quiet_writes(realchat: RealChat) -> int:
    """The write counter once it has held still for longer than a presence transition takes to
    be written (a device key's expiry plus a sweep: the devices of earlier tests that went away
    are written offline before the measured window, not in it) and longer than an idle backend
    may keep its counts before reporting them (PostgreSQL's PGSTAT_IDLE_INTERVAL, 10 s)."""
    presence = realchat.settings.presence
    window_s = max(presence.key_ttl_s + presence.sweep_interval_s, STATS_IDLE_FLUSH_S) + 1.0
    last, since = await writes(realchat), time.monotonic()
    while time.monotonic() - since < window_s:
        await asyncio.sleep(0.5)
        now = await writes(realchat)
        if now != last:
            last, since = now, time.monotonic()
    return last


async def table_writes(realchat: RealChat) -> dict[str, int]:
    """Writes per table: which one moved, if the database-wide counter did."""
    conn = await asyncpg.connect(realchat.services.postgres.dsn())
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = await conn.fetch(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS n FROM pg_stat_user_tables"
            " UNION ALL SELECT $1, n_tup_del FROM pg_stat_user_tables WHERE relname = 'outbox'",
            OUTBOX_DELETES,
        )
    finally:
        await conn.close()
    return {r["relname"]: int(r["n"]) for r in rows}


async def test_typing_reaches_members_devices_only_and_writes_nothing(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    carol = await register(http, base, "carol")
    conversation = await create_conversation(http, base, alice, bob)
    alices = [await connect(http, base, alice) for _ in range(2)]
    bobs = [await connect(http, base, bob) for _ in range(2)]
    carols = [await connect(http, base, carol)]
    everyone = alices + bobs + carols
    await online(http, base, [alice, bob, carol])
    before = await quiet_writes(realchat)
    tables_before = await table_writes(realchat)

    await alices[0].send({"type": "typing", "conversation_id": conversation, "typing": True})
    for device in [alices[1], *bobs]:
        await device.wait(lambda d: typing_of(d) == [(conversation, alice.user_id, True)])
    # A burst within the limit's interval is one signal; the stop goes through.
    for _ in range(5):
        await alices[0].send({"type": "typing", "conversation_id": conversation})
    await alices[0].send({"type": "typing", "conversation_id": conversation, "typing": False})
    for device in [alices[1], *bobs]:
        await device.wait(lambda d: len(typing_of(d)) >= 2)
    for device in everyone:
        await barrier(device)
    for device in [alices[1], *bobs]:
        assert typing_of(device) == [
            (conversation, alice.user_id, True),
            (conversation, alice.user_id, False),
        ]
    # The typing device does not hear itself; a non-member hears nothing.
    assert typing_of(alices[0]) == []
    assert typing_of(carols[0]) == []

    # A non-member's typing is refused with an error frame; the connection stays usable.
    await carols[0].send({"type": "typing", "conversation_id": conversation})
    await carols[0].wait(lambda d: d.of_type("error"))
    assert [f["code"] for f in carols[0].of_type("error")] == ["not_a_member"]
    await barrier(carols[0])
    for device in alices + bobs:
        await barrier(device)
        assert len(typing_of(device)) == (0 if device is alices[0] else 2)

    # Nothing of it reached PostgreSQL.
    after = await quiet_writes(realchat)
    tables_after = await table_writes(realchat)
    moved = {t: n - tables_before.get(t, 0) for t, n in tables_after.items()}
    assert after == before, {t: n for t, n in moved.items() if n}
    for device in everyone:
        assert [f for f in device.of_type("error") if device is not carols[0]] == []
        await device.close()


async def test_typing_latency_within_bound(realchat: RealChat, http: aiohttp.ClientSession) -> None:
    """Bob's device sees alice's typing within 200 ms (the median of 10 starts; a stop between
    two starts lets the next one through the limiter at once)."""
    base = realchat.base_url
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    conversation = await create_conversation(http, base, alice, bob)
    typist, reader = await connect(http, base, alice), await connect(http, base, bob)
    delays = []
    for n in range(10):
        started = time.monotonic()
        await typist.send({"type": "typing", "conversation_id": conversation})
        await reader.wait(lambda d, n=n: len(typing_of(d)) > 2 * n)
        delays.append(time.monotonic() - started)
        await typist.send({"type": "typing", "conversation_id": conversation, "typing": False})
        await reader.wait(lambda d, n=n: len(typing_of(d)) > 2 * n + 1)
    delays.sort()
    print(f"typing delivery delays (s): median {delays[5]:.4f}, max {delays[-1]:.4f}")
    assert delays[5] < DELIVERY_BOUND_S
    await typist.close()
    await reader.close()
