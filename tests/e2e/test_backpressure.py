"""Slow clients cannot hurt anyone, on a real gateway with a 16-frame send queue: a client that
stops reading is cut off and costs the gateway no memory, a slow reader is told 4008 and catches
up with `sync`, and a client that keeps up meanwhile gets every message in order.

The misbehaving clients are raw sockets with a tiny receive buffer and segment size, so the
kernel cannot hide their slowness behind megabytes of buffers (see tests/support/rawws.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.conftest import RealChat
from tests.support.client import User, connect, create_conversation, register, send_rest
from tests.support.gateways import ExtraGateway, extra_gateway
from tests.support.rawws import OP_CLOSE, OP_TEXT, Frame, RawWebSocket
from tests.support.rest import call
from tests.support.traffic import connect_timed, contiguous, flood, percentiles
from tests.support.waiting import eventually_async

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUEUE = 16
CLOSE_GRACE_S = 5.0
SLOW_CUTS = "realchat_gateway_slow_consumer_disconnects_total"
ACTIVE = "realchat_gateway_active_connections"
MiB = 1024 * 1024
#: The reading client's p95 delivery latency while others stall: a generous liveness bound.
P95_BOUND_S = 2.0


def big(n: int) -> str:
    """The largest message there is: 4000 characters of 4 UTF-8 bytes (a ~16 KiB frame)."""
    return f"{n:05d} " + "\U0001f600" * 3994


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def narrow(
    realchat: RealChat, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ExtraGateway]:
    """A gateway whose connections queue at most 16 frames. Its close grace is 5 s, not 2: a
    slow reader must read what is ahead of its close frame within the grace, and on a loaded
    test machine the reader itself gets little CPU. Its heartbeat is slower than the tests, so
    only full queues cut stalled clients off here (not unanswered pings)."""
    log_dir = tmp_path_factory.mktemp("narrow-gateway")
    async with extra_gateway(
        realchat.services,
        log_dir,
        send_queue_size=QUEUE,
        close_grace_s=CLOSE_GRACE_S,
        heartbeat_s=300,
        idle_timeout_s=600,
    ) as gateway:
        yield gateway


async def next_message(client: RawWebSocket) -> Frame | None:
    """The next frame that is not a presence notice (co-members come and go meanwhile)."""
    while True:
        frame = await client.recv()
        if frame is None or frame.opcode != OP_TEXT or frame.json()["type"] != "presence":
            return frame


async def stalled_client(gateway: ExtraGateway, user: User) -> RawWebSocket:
    """Connected and past `hello`, then never reading again unless the test says so."""
    client = await RawWebSocket.connect(
        f"{gateway.base_url}/v1/ws?token={user.token}", rcvbuf=4096, mss=536
    )
    hello = await client.recv()
    assert hello is not None
    assert hello.json()["type"] == "hello"
    return client


async def test_a_client_that_stops_reading_is_dropped_and_costs_the_gateway_no_memory(
    realchat: RealChat, http: aiohttp.ClientSession, narrow: ExtraGateway
) -> None:
    base = realchat.base_url  # senders write through the fixture's gateway (no send limit)
    alice, bob, carol = [await register(http, base, name) for name in ("alice", "bob", "carol")]
    conversation = await create_conversation(http, base, alice, bob, carol)
    reader = await connect_timed(http, narrow.base_url, carol)
    stalled = [await stalled_client(narrow, bob) for _ in range(4)]
    # The gateway reads the conversation's partition: the first message arrives live.
    await send_rest(http, base, alice, conversation, "warm-up")
    await reader.wait(lambda d: d.seqs(conversation) == [1])
    before = await narrow.metrics(http)
    rss_before = narrow.rss_bytes()

    count = 1500
    await flood(http, base, alice, conversation, count, big, concurrency=32)
    total = count + 1
    await reader.wait(lambda d: len(d.seqs(conversation)) >= total, timeout_s=120)
    after = await eventually_async(
        lambda: narrow.metrics(http),
        lambda m: (
            m[SLOW_CUTS] - before[SLOW_CUTS] >= len(stalled)
            and m[ACTIVE] <= before[ACTIVE] - len(stalled)
        ),
        timeout_s=30,
    )
    rss_after = narrow.rss_bytes()

    # (c) The client that kept up got everything, in order, and was never cut off.
    assert reader.seqs(conversation) == list(range(1, total + 1))
    assert not reader.ws.closed
    latencies = reader.latencies(conversation)
    cuts = percentiles(latencies, 50, 95)
    print(
        f"\nreading client, {total} messages of ~16 KiB while 4 clients stalled: delivery "
        f"latency p50 {cuts[50] * 1000:.0f} ms, p95 {cuts[95] * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms"
    )
    # Normal latency for the others while the stalled ones fill up and are cut off: about
    # 0.2 s p95 measured on a loaded 2-core machine. Delivery that waited on a stalled
    # client's socket would hold every later event up by seconds (the close grace is 5 s).
    assert cuts[95] < P95_BOUND_S, f"p95 {cuts[95]:.3f} s"

    # (a) The stalled clients were cut off as slow consumers and their connections dropped.
    assert after[SLOW_CUTS] - before[SLOW_CUTS] == len(stalled)
    assert after[ACTIVE] == before[ACTIVE] - len(stalled)
    for client in stalled:
        frames, ended = await client.drain(timeout_s=30)
        client.close()
        assert ended in ("close 4008", "eof", "reset"), ended
        seqs = [
            f.json()["message"]["seq"]
            for f in frames
            if f.opcode == OP_TEXT and f.json()["type"] == "message"  # not presence frames
        ]
        assert seqs == list(range(1, len(seqs) + 1)), "what did arrive came in order"
        assert len(seqs) < total

    # (d) Memory stayed bounded: the backlog the stalled clients did not read was not kept.
    backlog = count * len(big(0).encode())
    growth = rss_after - rss_before
    print(
        f"gateway RSS {rss_before / MiB:.1f} -> {rss_after / MiB:.1f} MiB "
        f"(growth {growth / MiB:+.1f} MiB) after a {backlog / MiB:.0f} MiB backlog "
        f"at {len(stalled)} stalled clients"
    )
    assert growth < min(50 * MiB, backlog / 2)
    await reader.close()


async def test_a_slow_reader_gets_4008_and_catches_up_with_sync(
    realchat: RealChat, http: aiohttp.ClientSession, narrow: ExtraGateway
) -> None:
    base = realchat.base_url
    alice, dave = await register(http, base, "alice"), await register(http, base, "dave")
    conversation = await create_conversation(http, base, alice, dave)
    slow = await stalled_client(narrow, dave)
    await send_rest(http, base, alice, conversation, "warm-up")
    warm = await asyncio.wait_for(next_message(slow), timeout=30)
    assert warm is not None
    assert warm.json()["message"]["seq"] == 1

    count = 400
    sending = asyncio.create_task(
        flood(http, base, alice, conversation, count, big, concurrency=32)
    )
    # (b) Read a frame, pause 20 ms (at most 50 frames/s): slower than the sender, but reading.
    seqs = [1]
    while True:
        frame = await asyncio.wait_for(next_message(slow), timeout=60)
        assert frame is not None, f"connection dropped without a close frame after {seqs[-1]}"
        if frame.opcode == OP_CLOSE:
            break
        seqs.append(frame.json()["message"]["seq"])
        await asyncio.sleep(0.02)
    slow.close()
    assert frame.close_code == 4008
    assert seqs == list(range(1, len(seqs) + 1)), "until the cut, in order and complete"
    total = count + 1
    assert seqs[-1] < total

    # (e) Reconnect and sync from the last contiguous position: everything, once, in order.
    device = await connect(http, narrow.base_url, dave)
    last = seqs[-1]
    await device.send({"type": "sync", "positions": {conversation: last}})
    await sending
    await device.wait(
        lambda d: (
            bool(d.of_type("sync_done")) and contiguous(d.seqs(conversation), last)[-1:] == [total]
        ),
        timeout_s=60,
    )
    received = device.seqs(conversation)
    start = received.index(last + 1)  # live frames may precede the sync taking effect
    assert received[start:] == list(range(last + 1, total + 1))
    assert seqs + received[start:] == list(range(1, total + 1))
    await device.close()

    # The same history pages over REST too, 500 of the largest messages (~8 MB) at a time.
    status, page = await call(
        http,
        "GET",
        f"{base}/v1/conversations/{conversation}/messages?limit=500",
        headers=dave.auth,
    )
    assert status == 200, page
    assert [m["seq"] for m in page["messages"]] == list(range(1, total + 1))
