"""Backfills racing live events: contiguous, no duplicate, nothing lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from realchat.contract.frames import Message, MessageFrame, encode
from realchat.gateway.chat_client import ChatCallError
from realchat.gateway.connection import Connection
from realchat.gateway.sync import Backfiller
from realchat.gateway.wsframe import text_frame
from tests.support.waiting import eventually
from tests.unit.gateway.fakes import FakeHistory, FakeSink

CONV = str(uuid.uuid4())


async def wait_for(predicate: Callable[[], object], timeout_s: float = 2) -> None:
    """Let the connection's writer run until `predicate` holds."""
    assert await eventually(lambda: bool(predicate()), timeout_s, interval_s=0.001)


def setup(page_size: int = 3) -> tuple[FakeSink, FakeHistory, Connection, Backfiller]:
    sink, history = FakeSink(), FakeHistory()
    backfiller = Backfiller(history, page_size, retry_initial_s=0.01, retry_max_s=0.04)
    conn = Connection(uuid.uuid4(), sink, queue_size=16, close_grace_s=0.1, on_gap=backfiller.start)
    return sink, history, conn, backfiller


def publish(history: FakeHistory, conn: Connection) -> None:
    """Commit a message, then deliver its live event (as the Kafka path would)."""
    m = history.append(CONV)
    conn.offer_live(CONV, m.seq, text_frame(encode(MessageFrame(m))))


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


async def test_a_gap_backfill_retries_while_the_chat_service_is_down_then_fills_the_gap() -> None:
    sink, history, conn, _ = setup()
    publish(history, conn)  # 1 delivered live
    history.append(CONV)  # 2 committed but its live event is lost
    history.failures = 6  # the chat service is down for the next six reads
    publish(history, conn)  # 3 arrives: gap; held back while the backfill fails
    # No further event and no sync: the retries alone deliver 2 and the held-back 3.
    await wait_for(lambda: len(sink.seqs(CONV)) >= 3)
    assert sink.seqs(CONV) == [1, 2, 3]
    assert history.reads == 7
    assert not conn.cursor(CONV).syncing
    await conn.finish()


async def test_a_gap_backfill_does_not_retry_a_refusal_and_a_sync_does_not_retry_at_all() -> None:
    sink, history, conn, backfiller = setup()
    publish(history, conn)
    history.append(CONV)
    history.failures = 1
    history.failure = ChatCallError(403, "not_a_member", "no")
    publish(history, conn)  # gap: the backfill is refused and ends, not retried
    await wait_for(lambda: not conn.cursor(CONV).syncing)
    assert history.reads == 1
    history.failures = 1
    history.failure = ChatCallError(503, "chat_unavailable", "down")
    with pytest.raises(ChatCallError):  # the client gets sync_failed and decides
        await backfiller.sync(conn, {CONV: 0})
    assert history.reads == 2
    assert sink.seqs(CONV) == [1]
    await conn.finish()


async def test_backfills_beyond_the_concurrency_cap_wait_for_a_page_slot() -> None:
    sink, history = FakeSink(), FakeHistory()
    backfiller = Backfiller(history, page_size=3, max_concurrent=1)
    conns = [
        Connection(uuid.uuid4(), sink, queue_size=16, close_grace_s=0.1, on_gap=backfiller.start)
        for _ in range(2)
    ]
    history.append(CONV)
    history.gate = asyncio.Event()
    syncs = [asyncio.create_task(backfiller.sync(conn, {CONV: 0})) for conn in conns]
    await asyncio.wait_for(history.snapshot_taken.wait(), 2)
    await asyncio.sleep(0.05)  # the second sync had every chance to read; it must not
    assert history.reads == 1
    history.gate.set()
    await asyncio.wait_for(asyncio.gather(*syncs), 2)
    assert history.reads == 2
    for conn in conns:
        await conn.finish()


async def test_a_client_that_does_not_read_its_backfill_is_cut_off_and_frees_its_slot() -> None:
    stalled, reading, history = FakeSink(), FakeSink(), FakeHistory()
    backfiller = Backfiller(history, page_size=10, max_concurrent=1)

    def connection(sink: FakeSink) -> Connection:
        return Connection(
            uuid.uuid4(), sink, queue_size=4, close_grace_s=0.1, on_gap=backfiller.start,
            backfill_stall_s=0.1,
        )  # fmt: skip

    for _ in range(10):
        history.append(CONV)
    stalled.reading.clear()  # takes no frame at all
    first, second = connection(stalled), connection(reading)
    cut = asyncio.create_task(backfiller.sync(first, {CONV: 0}))
    await wait_for(lambda: stalled.closed is not None or first.close_code is not None)
    assert first.close_code == 4008
    # The slot it held is free: another client's sync goes through.
    await asyncio.wait_for(backfiller.sync(second, {CONV: 0}), 2)
    await wait_for(lambda: len(reading.seqs(CONV)) >= 10)
    assert reading.seqs(CONV) == list(range(1, 11))
    cut.cancel()
    for conn in (first, second):
        await conn.finish()


def fresh(
    grace_s: float, queue_size: int = 16
) -> tuple[FakeSink, FakeHistory, Connection, Backfiller]:
    """A connection as a session opens it: live delivery waits for the first sync."""
    sink, history = FakeSink(), FakeHistory()
    backfiller = Backfiller(history, 50)
    conn = Connection(
        uuid.uuid4(), sink, queue_size=queue_size, close_grace_s=0.1, on_gap=backfiller.start,
        sync_grace_s=grace_s,
    )  # fmt: skip
    return sink, history, conn, backfiller


async def test_live_events_before_the_first_sync_come_after_its_backfill() -> None:
    """Seen in the field: 104, 105, 6, 7, ... when live events beat the client's first sync."""
    sink, history, conn, backfiller = fresh(grace_s=10)
    for _ in range(103):
        history.append(CONV)
    publish(history, conn)  # 104, live, before the sync is handled
    publish(history, conn)  # 105
    await asyncio.sleep(0.01)
    assert sink.frames == []  # held
    await backfiller.sync(conn, {CONV: 5})
    publish(history, conn)  # 106, after the sync: live
    await wait_for(lambda: len(sink.seqs(CONV)) >= 101)
    assert sink.seqs(CONV) == list(range(6, 107))
    assert [f["type"] for f in sink.frames].index("sync_done") == 100
    await conn.finish()


async def test_without_a_sync_held_events_go_out_after_the_grace() -> None:
    sink, history, conn, _ = fresh(grace_s=0.05)
    publish(history, conn)
    publish(history, conn)
    await asyncio.sleep(0.01)
    assert sink.seqs(CONV) == []
    await wait_for(lambda: len(sink.seqs(CONV)) >= 2)
    assert sink.seqs(CONV) == [1, 2]
    publish(history, conn)
    await wait_for(lambda: len(sink.seqs(CONV)) >= 3)
    assert sink.seqs(CONV) == [1, 2, 3]
    assert history.reads == 0  # held frames were sent as they were, not read again
    await conn.finish()


async def test_holding_is_bounded_like_the_send_queue() -> None:
    sink, history, conn, _ = fresh(grace_s=10, queue_size=4)
    for _ in range(5):
        publish(history, conn)
    await wait_for(lambda: len(sink.seqs(CONV)) >= 5)  # the fifth started live delivery
    assert sink.seqs(CONV) == [1, 2, 3, 4, 5]
    await conn.finish()


async def test_a_conversation_the_first_sync_leaves_out_gets_its_held_events_live() -> None:
    sink, history, conn, backfiller = fresh(grace_s=10)
    other = str(uuid.uuid4())
    m = history.append(other)
    conn.offer_live(other, m.seq, text_frame(encode(MessageFrame(m))))
    history.append(CONV)
    await backfiller.sync(conn, {CONV: 0})
    await wait_for(lambda: sink.seqs(other) and sink.seqs(CONV))
    assert sink.seqs(other) == [1]
    assert sink.seqs(CONV) == [1]
    await conn.finish()


class RecordingChanges:
    """The chat service's change reads, recorded: (conversation, after_change)."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, int]] = []

    async def changes(
        self, user: uuid.UUID, conversation_id: str, after_change: int, up_to_seq: int, limit: int
    ) -> tuple[list[Message], int]:
        self.reads.append((conversation_id, after_change))
        return [], after_change


@pytest.mark.parametrize(
    ("clients_counter", "read_counter", "reads"),
    [(4, 4, []), (4, 6, [(CONV, 4)]), (9, 6, [])],
    ids=["unchanged", "changed-while-away", "ahead"],
)
async def test_a_sync_reads_changes_only_when_its_counter_is_behind(
    clients_counter: int, read_counter: int, reads: list[tuple[str, int]]
) -> None:
    """A reconnect after a quiet spell costs no change read: what changes after the counter
    was read comes live, so only a client behind that counter is caught up."""
    sink, history = FakeSink(), FakeHistory()
    changes = RecordingChanges()
    backfiller = Backfiller(history, 3, changes=changes)
    conn = Connection(uuid.uuid4(), sink, queue_size=16, close_grace_s=0.1, on_gap=backfiller.start)
    history.append(CONV)
    done = await backfiller.sync(conn, {CONV: 0}, {CONV: clients_counter}, {CONV: read_counter})
    assert done == {CONV: 1}
    assert changes.reads == reads


async def test_a_sync_of_a_conversation_the_client_has_up_to_its_last_seq_reads_no_history() -> (
    None
):
    """The client is at the conversation's last seq as read with its positions: no history
    read, `sync_done` at once, and a message written after that read (its live event held
    since before the sync, or arriving later) goes out live, in order."""
    sink, history, conn, backfiller = setup()
    conn = Connection(
        uuid.uuid4(), sink, queue_size=16, close_grace_s=0.1, on_gap=backfiller.start,
        sync_grace_s=5.0,
    )  # fmt: skip
    for _ in range(3):
        history.append(CONV)
    publish(history, conn)  # seq 4, written after the read below: held until the sync
    done = await backfiller.sync(conn, {CONV: 3}, last_seqs={CONV: 3})
    publish(history, conn)  # seq 5
    await wait_for(lambda: sink.seqs(CONV) == [4, 5])
    assert done == {CONV: 4}  # the held event went out as live delivery started
    assert history.reads == 0


async def test_a_sync_behind_the_last_seq_still_reads_history() -> None:
    sink, history, conn, backfiller = setup()
    for _ in range(4):
        history.append(CONV)
    done = await backfiller.sync(conn, {CONV: 2}, last_seqs={CONV: 4})
    await wait_for(lambda: sink.seqs(CONV) == [3, 4])
    assert done == {CONV: 4}
    assert history.reads >= 1
