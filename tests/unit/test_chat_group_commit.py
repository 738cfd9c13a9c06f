"""The group-commit batcher without a database: when batches start, and what each send gets."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from realchat.chat.group_commit import GroupCommitLimits, GroupCommitter


class Recorder:
    """A write function whose commits complete only when the test says so."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release: list[asyncio.Event] = []

    async def write(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        done = asyncio.Event()
        self.release.append(done)
        await done.wait()
        if -1 in items:
            raise RuntimeError("the database went away")
        return [i * 10 for i in items]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_idle_batcher_writes_the_first_send_at_once() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits(linger_s=10))
    sent = asyncio.create_task(committer.submit(1))
    await settle()
    assert recorder.batches == [[1]], "no linger when nothing is in flight"
    recorder.release[0].set()
    assert await sent == 10


async def test_sends_arriving_during_a_commit_form_the_next_batch_in_order() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits(linger_s=10, max_inflight=1))
    first = asyncio.create_task(committer.submit(1))
    await settle()
    rest = [asyncio.create_task(committer.submit(i)) for i in (2, 3, 4)]
    await settle()
    assert recorder.batches == [[1]]
    recorder.release[0].set()
    await settle()
    assert recorder.batches == [[1], [2, 3, 4]]
    recorder.release[1].set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40]


async def test_a_full_batch_starts_beside_one_in_flight_without_waiting() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits(max_batch=2, linger_s=10))
    tasks = [asyncio.create_task(committer.submit(i)) for i in (1, 2, 3, 4, 5)]
    await settle()
    assert recorder.batches == [[1], [2, 3], [4, 5]]
    for done in recorder.release:
        done.set()
    assert await asyncio.gather(*tasks) == [10, 20, 30, 40, 50]


async def test_the_linger_bounds_the_wait_of_a_send_queued_behind_a_commit() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits(linger_s=0.01))
    first = asyncio.create_task(committer.submit(1))
    await settle()
    second = asyncio.create_task(committer.submit(2))
    await settle()
    assert recorder.batches == [[1]]
    await asyncio.sleep(0.05)
    assert recorder.batches == [[1], [2]], "a stuck commit holds nobody back past the linger"
    for done in recorder.release:
        done.set()
    assert (await first, await second) == (10, 20)


async def test_a_failed_batch_fails_its_sends_and_no_other() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits(max_inflight=1))
    failing = asyncio.create_task(committer.submit(-1))
    await settle()
    later = asyncio.create_task(committer.submit(3))
    await settle()
    recorder.release[0].set()
    with pytest.raises(RuntimeError, match="went away"):
        await failing
    await settle()
    recorder.release[1].set()
    assert await later == 30


async def test_a_send_whose_caller_left_before_its_batch_is_not_written() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits(max_inflight=1))
    first = asyncio.create_task(committer.submit(1))
    await settle()
    gone = asyncio.create_task(committer.submit(2))
    kept = asyncio.create_task(committer.submit(3))
    await settle()
    gone.cancel()
    await settle()
    recorder.release[0].set()
    await settle()
    assert recorder.batches == [[1], [3]]
    recorder.release[1].set()
    assert (await first, await kept) == (10, 30)


async def test_drain_waits_for_everything_accepted() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits(max_inflight=1))
    tasks = [asyncio.create_task(committer.submit(i)) for i in (1, 2)]
    await settle()
    draining = asyncio.create_task(committer.drain())
    await settle()
    assert not draining.done()
    recorder.release[0].set()
    await settle()
    recorder.release[1].set()
    await asyncio.wait_for(draining, 1)
    assert committer.inflight == 0
    assert await asyncio.gather(*tasks) == [10, 20]


async def test_an_idle_batcher_writes_many_sends_of_one_caller_as_one_batch_at_once() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits(linger_s=10))
    sent = asyncio.create_task(committer.submit_many([1, 2, 3]))
    await settle()
    assert recorder.batches == [[1, 2, 3]]
    recorder.release[0].set()
    assert await sent == [10, 20, 30]


async def test_many_sends_queued_behind_a_commit_join_the_next_batch_together_in_order() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits(linger_s=10, max_inflight=1))
    first = asyncio.create_task(committer.submit(1))
    await settle()
    group = asyncio.create_task(committer.submit_many([2, 3]))
    single = asyncio.create_task(committer.submit(4))
    await settle()
    recorder.release[0].set()
    await settle()
    assert recorder.batches == [[1], [2, 3, 4]]
    recorder.release[1].set()
    assert (await first, await group, await single) == (10, [20, 30], 40)


async def test_a_gathered_call_starts_in_a_free_slot_without_lingering() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits(linger_s=10, max_inflight=3))
    first = asyncio.create_task(committer.submit(1))
    await settle()
    single = asyncio.create_task(committer.submit(4))
    await settle()
    assert recorder.batches == [[1]], "a single send waits for company"
    group = asyncio.create_task(committer.submit_many([2, 3]))
    await settle()
    assert recorder.batches == [[1], [4, 2, 3]], "a call's sends go at once, with what waits"
    for release in recorder.release:
        release.set()
    assert (await first, await single, await group) == (10, 40, [20, 30])


async def test_many_sends_split_over_batches_get_every_outcome_or_the_failure() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits(max_batch=2, max_inflight=1))
    first = asyncio.create_task(committer.submit(0))
    await settle()
    group = asyncio.create_task(committer.submit_many([5, -1, 6]))
    await settle()
    recorder.release[0].set()
    await settle()
    assert recorder.batches[1] == [5, -1], "at most max_batch per batch"
    recorder.release[1].set()
    await settle()
    assert recorder.batches[2] == [6]
    recorder.release[2].set()
    assert await first == 0
    with pytest.raises(RuntimeError, match="went away"):
        await group


async def test_a_caller_gone_before_its_batch_started_has_none_of_its_sends_written() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits(max_inflight=1))
    first = asyncio.create_task(committer.submit(1))
    await settle()
    group = asyncio.create_task(committer.submit_many([2, 3]))
    await settle()
    group.cancel()
    await settle()
    recorder.release[0].set()
    await settle()
    assert recorder.batches == [[1]]
    assert await first == 10
    assert group.cancelled()


async def test_no_sends_is_no_batch() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.write, GroupCommitLimits())
    assert await committer.submit_many([]) == []
    assert recorder.batches == []
