"""The SDK's small parts: the feeds the application reads and the acks it sends."""

from __future__ import annotations

import asyncio

import pytest

from realchat.client.acks import Acks
from realchat.client.connection import LinkClosed
from realchat.client.feed import Feed
from realchat.contract.frames import AckFrame, ClientFrame

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def read_all(feed: Feed[int]) -> list[int]:
    async with asyncio.timeout(5):
        return [item async for item in feed.items()]


async def test_a_feed_gives_what_is_left_after_it_finishes_then_ends() -> None:
    feed: Feed[int] = Feed()
    feed.extend([1, 2])
    feed.finish(None)
    assert await read_all(feed) == [1, 2]


async def test_a_finished_feed_raises_the_failure_once_it_is_read_empty() -> None:
    feed: Feed[int] = Feed()
    feed.put(1)
    feed.finish(RuntimeError("gone"))
    items = feed.items()
    assert await anext(items) == 1
    with pytest.raises(RuntimeError, match="gone"):
        await anext(items)


async def test_a_reader_waits_for_the_next_item() -> None:
    feed: Feed[int] = Feed()
    reader = asyncio.create_task(anext(feed.items()))
    await asyncio.sleep(0)
    assert not reader.done()
    feed.put(7)
    assert await asyncio.wait_for(reader, 5) == 7


async def test_a_full_bounded_feed_drops_the_oldest_and_counts_it() -> None:
    feed: Feed[int] = Feed(maxlen=2)
    feed.extend([1, 2, 3])
    feed.finish(None)
    assert feed.dropped == 1
    assert await read_all(feed) == [2, 3]


class Writer:
    def __init__(self, broken_after: int | None = None) -> None:
        self.sent: list[ClientFrame] = []
        self.broken_after = broken_after

    async def send(self, frame: ClientFrame) -> None:
        if self.broken_after is not None and len(self.sent) >= self.broken_after:
            raise LinkClosed("gone")
        self.sent.append(frame)


async def test_acks_send_the_highest_wanted_seq_once() -> None:
    acks = Acks()
    acks.want("c", 3)
    acks.want("c", 2)  # lower: changes nothing
    acks.want("d", 1)
    writer = Writer()
    await acks.flush(writer)
    await acks.flush(writer)
    assert writer.sent == [AckFrame("c", 3), AckFrame("d", 1)]


async def test_an_ack_the_broken_link_did_not_take_goes_on_the_next_one() -> None:
    acks = Acks()
    acks.want("c", 3)
    acks.want("d", 1)
    broken = Writer(broken_after=1)
    await acks.flush(broken)
    assert broken.sent == [AckFrame("c", 3)]
    next_link = Writer()
    await acks.flush(next_link)
    assert next_link.sent == [AckFrame("d", 1)]
