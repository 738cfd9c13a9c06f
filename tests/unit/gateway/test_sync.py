"""Backfills racing live events: contiguous, no duplicate, nothing lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from realchat.contract.frames import MessageFrame, encode
from realchat.gateway.connection import Connection
from realchat.gateway.sync import Backfiller
from tests.support.waiting import eventually
from tests.unit.gateway.fakes import FakeHistory, FakeSink

CONV = str(uuid.uuid4())


async def wait_for(predicate: Callable[[], object], timeout_s: float = 2) -> None:
    """Let the connection's writer run until `predicate` holds."""
    assert await eventually(lambda: bool(predicate()), timeout_s, interval_s=0.001)


def setup(page_size: int = 3) -> tuple[FakeSink, FakeHistory, Connection, Backfiller]:
    sink, history = FakeSink(), FakeHistory()
    backfiller = Backfiller(history, page_size)
    conn = Connection(uuid.uuid4(), sink, queue_size=16, close_grace_s=0.1, on_gap=backfiller.start)
    conn.start_writer()
    return sink, history, conn, backfiller


def publish(history: FakeHistory, conn: Connection) -> None:
    """Commit a message, then deliver its live event (as the Kafka path would)."""
    m = history.append(CONV)
    conn.offer_live(CONV, m.seq, encode(MessageFrame(m)))


async def test_sync_from_zero_while_live_events_flow_is_contiguous() -> None:
    sink, history, conn, backfiller = setup(page_size=3)
    for _ in range(10):
        history.append(CONV)
    history.gate = asyncio.Event()
    syncing = asyncio.create_task(backfiller.sync(conn, {CONV: 0}))
    await asyncio.wait_for(history.snapshot_taken.wait(), 2)
    for _ in range(5):  # live traffic while the first history read is in flight
        publish(history, conn)
    history.gate.set()
    positions = await asyncio.wait_for(syncing, 2)
    for _ in range(3):  # and after the sync
        publish(history, conn)
    await wait_for(lambda: len(sink.seqs(CONV)) >= 18)
    assert sink.seqs(CONV) == list(range(1, 19))
    assert positions == {CONV: 15}
    assert sink.frames[15]["type"] == "sync_done"
    await conn.finish()


async def test_an_event_committed_after_the_last_page_is_not_lost() -> None:
    sink, history, conn, backfiller = setup(page_size=100)
    history.append(CONV)
    history.gate = asyncio.Event()
    syncing = asyncio.create_task(backfiller.sync(conn, {CONV: 0}))
    await asyncio.wait_for(history.snapshot_taken.wait(), 2)  # the read's snapshot is [1]
    publish(history, conn)  # seq 2 arrives live mid-backfill, after the snapshot
    history.gate.set()
    await asyncio.wait_for(syncing, 2)
    await wait_for(lambda: len(sink.seqs(CONV)) >= 2)
    assert sink.seqs(CONV) == [1, 2]
    assert history.reads == 2  # the backfill went round again to reach the live seq
    await conn.finish()


async def test_a_live_gap_triggers_a_backfill_that_fills_it() -> None:
    sink, history, conn, _ = setup()
    publish(history, conn)  # 1 delivered live
    history.append(CONV)  # 2 committed but its live event is lost
    publish(history, conn)  # 3 arrives: gap
    publish(history, conn)  # 4 arrives while the backfill runs
    await wait_for(lambda: len(sink.seqs(CONV)) >= 4)
    await asyncio.sleep(0.01)
    assert sink.seqs(CONV) == [1, 2, 3, 4]
    assert not conn.cursor(CONV).syncing
    await conn.finish()


async def test_sync_resends_after_the_clients_position() -> None:
    sink, history, conn, backfiller = setup()
    for _ in range(5):
        publish(history, conn)
    await backfiller.sync(conn, {CONV: 3})
    await wait_for(lambda: sink.frames and sink.frames[-1]["type"] == "sync_done")
    assert sink.seqs(CONV) == [1, 2, 3, 4, 5, 4, 5]
    assert sink.frames[-1] == {"type": "sync_done", "positions": {CONV: 5}}
    await conn.finish()
