"""Page slots: a user holding their share waits for their own slots, while others still get the
gateway's."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from realchat.gateway.page_slots import PageSlots

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_user_at_their_share_waits_while_another_user_gets_a_slot() -> None:
    slots = PageSlots(total=4, per_user=2)
    greedy, other = uuid.uuid4(), uuid.uuid4()
    await slots.acquire(greedy)
    await slots.acquire(greedy)
    third = asyncio.create_task(slots.acquire(greedy))
    await asyncio.wait_for(slots.acquire(other), 1)  # not held up by the greedy user
    await asyncio.sleep(0)
    assert not third.done()
    slots.release(greedy)
    await asyncio.wait_for(third, 1)
    for user in (greedy, greedy, other):
        slots.release(user)
    assert slots.users() == 0


async def test_the_gateways_total_still_bounds_everyone() -> None:
    slots = PageSlots(total=1, per_user=4)
    first, second = uuid.uuid4(), uuid.uuid4()
    await slots.acquire(first)
    waiting = asyncio.create_task(slots.acquire(second))
    await asyncio.sleep(0)
    assert not waiting.done()
    slots.release(first)
    await asyncio.wait_for(waiting, 1)
    slots.release(second)
    assert slots.users() == 0


async def test_a_cancelled_wait_leaves_nothing_behind() -> None:
    slots = PageSlots(total=1, per_user=1)
    user = uuid.uuid4()
    await slots.acquire(user)
    waiting = asyncio.create_task(slots.acquire(user))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    slots.release(user)
    assert slots.users() == 0
    await asyncio.wait_for(slots.acquire(user), 1)  # the slot is whole again
