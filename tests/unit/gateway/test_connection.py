"""A connection's queue bounds and its per-conversation cursors, with a fake transport."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from realchat.contract.close_codes import CloseCode
from realchat.contract.frames import MessageFrame, encode
from realchat.gateway.connection import Connection
from realchat.gateway.hub import Hub
from realchat.gateway.wsframe import text_frame
from tests.unit.gateway.fakes import FakeSink, message

CONV = str(uuid.uuid4())


def payload(seq: int, conversation_id: str = CONV) -> bytes:
    return encode(MessageFrame(message(conversation_id, seq)))


def live(seq: int, conversation_id: str = CONV) -> bytes:
    """A live event's ready frame, as the hub encodes it once for every recipient."""
    return text_frame(payload(seq, conversation_id))


def connection(sink: FakeSink, queue_size: int = 8, gaps: list[str] | None = None) -> Connection:
    def on_gap(_: Connection, conversation_id: str) -> None:
        if gaps is not None:
            gaps.append(conversation_id)

    return Connection(uuid.uuid4(), sink, queue_size=queue_size, close_grace_s=0.2, on_gap=on_gap)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_live_events_are_delivered_in_order_and_duplicates_suppressed() -> None:
    sink = FakeSink()
    conn = connection(sink)
    for seq in (1, 2, 2, 3, 1):
        conn.offer_live(CONV, seq, live(seq))
    await settle()
    assert sink.seqs(CONV) == [1, 2, 3]
    await conn.finish()


async def test_a_gap_is_not_delivered_but_handed_to_a_backfill() -> None:
    sink, gaps = FakeSink(), []
    conn = connection(sink, gaps=gaps)
    conn.offer_live(CONV, 1, live(1))
    conn.offer_live(CONV, 3, live(3))
    await settle()
    assert sink.seqs(CONV) == [1]
    assert gaps == [CONV]
    assert conn.cursor(CONV).seen == 3
    await conn.finish()


async def test_a_client_that_stops_reading_is_cut_off_with_4008_and_memory_stays_bounded() -> None:
    sink = FakeSink()
    sink.reading.clear()  # the client stops reading
    conn = connection(sink, queue_size=4)
    for seq in range(1, 50):
        conn.offer_live(CONV, seq, live(seq))
    assert not conn.is_open
    assert conn.pending_frames == 0  # what waited is dropped, nothing keeps growing
    await asyncio.sleep(0.05)
    assert sink.closed == (CloseCode.SLOW_CONSUMER, "send queue full; reconnect and sync")
    await conn.finish()


async def test_a_client_that_never_takes_the_close_frame_is_dropped_after_the_grace() -> None:
    sink = FakeSink()
    sink.reading.clear()
    sink.take_close = False
    conn = connection(sink, queue_size=2)
    for seq in range(1, 8):  # the socket takes two, two wait, the next one cuts the client off
        conn.offer_live(CONV, seq, live(seq))
    await asyncio.sleep(0.4)
    assert sink.aborted
    await conn.finish()


async def test_backfill_waits_for_room_and_leaves_half_the_queue_to_live_traffic() -> None:
    sink = FakeSink()
    sink.reading.clear()
    conn = connection(sink, queue_size=8)
    pushed = 0

    async def backfill() -> None:
        nonlocal pushed
        for seq in range(1, 20):
            await conn.push_backfill(payload(seq))
            pushed += 1

    task = asyncio.create_task(backfill())
    await settle()
    assert conn.is_open
    assert pushed <= 8  # half the queue waits (+ the frames the socket took before it stopped)
    other = str(uuid.uuid4())
    conn.offer_live(other, 1, live(1, other))  # live traffic still fits
    assert conn.is_open
    sink.reading.set()
    await asyncio.wait_for(task, timeout=2)
    await settle()
    assert sink.seqs(CONV) == list(range(1, 20))
    assert sink.seqs(other) == [1]
    await conn.finish()


async def test_own_sends_are_not_echoed_and_nothing_before_them_is_lost() -> None:
    sink = FakeSink()
    conn = connection(sink)
    conn.note_own_send(CONV, 2)  # send_ok for 2 came back before 1 arrived through Kafka
    conn.offer_live(CONV, 1, live(1))
    conn.offer_live(CONV, 2, live(2))  # the echo of the client's own send
    conn.note_own_send(CONV, 4)  # 3, someone else's, is still on its way
    conn.offer_live(CONV, 3, live(3))
    conn.offer_live(CONV, 4, live(4))
    conn.offer_live(CONV, 5, live(5))
    await settle()
    assert sink.seqs(CONV) == [1, 3, 5]
    assert conn.cursor(CONV).delivered == 5
    await conn.finish()


@pytest.mark.parametrize("code", [CloseCode.GOING_AWAY])
async def test_close_sends_the_code_and_stops_queueing(code: CloseCode) -> None:
    sink = FakeSink()
    conn = connection(sink)
    conn.close(code, "server going away")
    assert not conn.push(b"{}")
    await settle()
    assert sink.closed == (code, "server going away")
    await conn.finish()


async def test_the_hub_pings_every_connection_through_its_writer_with_one_timer() -> None:
    hub = Hub(4)
    sinks = [FakeSink() for _ in range(5)]
    conns = [connection(sink) for sink in sinks]
    for conn in conns:
        hub.register(conn)
    pinging = asyncio.create_task(hub.ping_forever(0.01))
    try:
        await asyncio.sleep(0.05)
    finally:
        pinging.cancel()
    assert all(sink.pings >= 2 for sink in sinks), [s.pings for s in sinks]
    assert all(conn.is_open for conn in conns)
    for conn in conns:
        await conn.finish()


async def test_a_ping_round_is_spread_over_its_interval_once_per_connection() -> None:
    """Not every connection in one loop iteration: that burst held up the deliveries behind it
    and had a process holding thousands of sessions answer them all at once."""
    hub = Hub(4)
    sinks = [FakeSink() for _ in range(200)]
    conns = [connection(sink) for sink in sinks]
    for conn in conns:
        hub.register(conn)
    slices = 10
    pinging = asyncio.create_task(hub.ping_forever(0.5, slices=slices))
    try:
        seen: list[int] = []
        for _ in range(slices):  # one round: a part each 0.05 s
            await asyncio.sleep(0.05)
            await settle()
            seen.append(sum(sink.pings for sink in sinks))
    finally:
        pinging.cancel()
    # The round went out in parts, none holding more than a few times its share ...
    steps = [b - a for a, b in zip([0, *seen], seen, strict=False)]
    assert sum(1 for step in steps if step > 0) >= slices // 2, steps
    assert max(steps) < len(sinks) / 2, steps
    # ... and each connection got at most one ping of it.
    assert all(sink.pings <= 1 for sink in sinks), [s.pings for s in sinks]
    for conn in conns:
        await conn.finish()


async def test_a_ping_waits_its_turn_and_never_cuts_off_a_full_queue() -> None:
    sink = FakeSink()
    sink.reading.clear()  # the client reads nothing for now
    conn = connection(sink, queue_size=2)
    conn.offer_live(CONV, 1, live(1))
    await settle()  # the writer holds seq 1, blocked on the socket
    conn.offer_live(CONV, 2, live(2))
    conn.offer_live(CONV, 3, live(3))
    conn.ping()  # the queue is full: the keepalive is skipped, the client not cut off for it
    assert conn.is_open
    sink.reading.set()
    await settle()
    conn.ping()
    await settle()
    assert sink.seqs(CONV) == [1, 2, 3]
    assert sink.pings == 1
    await conn.finish()


async def test_frames_for_one_client_in_one_loop_iteration_go_out_in_one_write() -> None:
    sink = FakeSink()
    conn = connection(sink, queue_size=256)
    for seq in range(1, 6):
        conn.offer_live(CONV, seq, live(seq))
    assert sink.writes == 0  # nothing written per delivery: at the end of the iteration
    await settle()
    assert sink.writes == 1
    assert sink.seqs(CONV) == [1, 2, 3, 4, 5]
    await conn.finish()


async def test_a_burst_is_written_in_chunks_instead_of_piling_up() -> None:
    sink = FakeSink()
    conn = connection(sink, queue_size=256)
    for seq in range(1, 201):  # more than the bound would hold, to a client that keeps up
        conn.offer_live(CONV, seq, live(seq))
    assert conn.is_open
    assert conn.pending_frames < 64  # written in chunks while the socket takes them
    await settle()
    assert sink.seqs(CONV) == list(range(1, 201))
    await conn.finish()


async def test_the_backlog_is_bounded_in_bytes_too() -> None:
    sink = FakeSink()
    sink.reading.clear()
    conn = Connection(
        uuid.uuid4(), sink, queue_size=1000, queue_bytes=64 * 1024, close_grace_s=0.2,
        on_gap=lambda c, x: None,
    )  # fmt: skip
    big = text_frame(b'{"type":"pong","pad":"' + b"x" * 16_000 + b'"}')
    for _ in range(3):
        assert conn.push_frame(big)  # the socket takes what it can; then frames wait
    await settle()
    sent = 3
    while conn.is_open and sent < 20:
        conn.push_frame(big)
        sent += 1
    assert not conn.is_open  # cut off long before 1000 frames: ~64 KiB waited
    assert conn.close_code == CloseCode.SLOW_CONSUMER
    await conn.finish()


async def test_the_hub_closes_connections_nothing_came_from_with_one_sweep() -> None:
    hub = Hub(4)
    quiet, lively = FakeSink(), FakeSink()
    conns = [connection(quiet), connection(lively)]
    for conn in conns:
        hub.register(conn)
    conns[0].last_heard -= 10  # nothing from it for 10 s
    sweeping = asyncio.create_task(hub.close_idle_forever(idle_timeout_s=1.0))
    try:
        await asyncio.sleep(0.1)
    finally:
        sweeping.cancel()
    assert conns[0].close_code == CloseCode.IDLE_TIMEOUT
    assert conns[1].is_open
    await settle()
    assert quiet.closed == (CloseCode.IDLE_TIMEOUT, "idle timeout")
    for conn in conns:
        await conn.finish()
