"""The outbox wake-up's hints: which shards a notification names, how commits made meanwhile
are announced together, and when the publisher still scans."""

from __future__ import annotations

import asyncio

from realchat.outbox.publisher import hinted_shards
from realchat.outbox.wakeup import CommitNotifier, WakeupListener, decode_shards, encode_shards


class SlowPool:
    """Records each notification; each takes until the test releases it."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self.release = asyncio.Event()

    async def execute(self, _query: str, _channel: str, payload: str) -> None:
        self.payloads.append(payload)
        await self.release.wait()


def test_a_payload_names_shards_or_means_everywhere() -> None:
    assert decode_shards(encode_shards({7, 3, 12})) == frozenset({3, 7, 12})
    assert encode_shards({7, 3}) == "3,7"
    assert decode_shards("") is None
    assert decode_shards("3,x") is None
    assert decode_shards("-1") is None


async def test_commits_during_a_notification_are_announced_together_by_the_next() -> None:
    pool = SlowPool()
    notifier = CommitNotifier(pool, min_interval_s=0)  # type: ignore[arg-type]
    notifier({3})
    await asyncio.sleep(0)
    notifier({5})
    notifier({1, 5})
    await asyncio.sleep(0)
    assert pool.payloads == ["3"]
    pool.release.set()
    await notifier.close()
    assert pool.payloads == ["3", "1,5"]


async def test_a_commit_of_unknown_shards_asks_to_look_everywhere() -> None:
    pool = SlowPool()
    pool.release.set()
    notifier = CommitNotifier(pool, min_interval_s=0)  # type: ignore[arg-type]
    notifier({2})
    notifier(None)
    await notifier.close()
    assert pool.payloads == [""]


def test_the_listener_collects_hints_until_taken_and_any_unnamed_means_everywhere() -> None:
    listener = WakeupListener(pool=None)  # type: ignore[arg-type]
    assert listener.take_hints() is None, "before anything was heard: look everywhere"
    listener._on_notification(None, 1, "c", "2,4")
    listener._on_notification(None, 1, "c", "4,7")
    assert listener.woken.is_set()
    assert listener.take_hints() == frozenset({2, 4, 7})
    assert listener.take_hints() == frozenset()
    listener._on_notification(None, 1, "c", "2")
    listener._on_notification(None, 1, "c", "")
    assert listener.take_hints() is None


def test_the_publisher_goes_to_hinted_shards_but_still_scans_every_poll_interval() -> None:
    assert hinted_shards(frozenset({9, 2}), since_scan_s=0.001, poll_interval_s=0.02) == [2, 9]
    assert hinted_shards(frozenset({9}), since_scan_s=0.02, poll_interval_s=0.02) is None
    assert hinted_shards(frozenset(), since_scan_s=0.001, poll_interval_s=0.02) is None
    assert hinted_shards(None, since_scan_s=0.001, poll_interval_s=0.02) is None
