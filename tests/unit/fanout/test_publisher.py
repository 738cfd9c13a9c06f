"""The open-loop publisher: every message once, errors counted, the schedule kept."""

from __future__ import annotations

import time

from realchat.loadtest.fanout.payload import decode
from realchat.loadtest.fanout.publisher import open_loop
from realchat.loadtest.fanout.realchat_side import edge_groups, groups, senders_for


async def test_every_message_is_published_once_on_schedule_and_failures_are_counted() -> None:
    seen: list[int] = []

    async def publish(seq: int, payload: str) -> None:
        stamp = decode(payload)
        assert stamp.tag == "t"
        assert stamp.seq == seq
        assert stamp.published_ns <= time.monotonic_ns()
        if seq == 3:
            raise RuntimeError("refused")
        seen.append(seq)

    started = time.monotonic()
    result = await open_loop(publish, "t", rate=200.0, seconds=0.1)
    assert time.monotonic() - started >= 19 / 200
    assert sorted(seen) == [n for n in range(20) if n != 3]
    assert (result.published, result.errors) == (19, 1)
    assert result.first_error == "RuntimeError: refused"


def test_senders_stay_under_the_per_user_send_limit() -> None:
    assert senders_for(50) == 10
    assert senders_for(10) == 2
    assert senders_for(0.5) == 1


def test_realchat_groups_add_up_the_gateways() -> None:
    pids = {"gateway-1": 11, "gateway-2": 12, "balancer": 13, "chat": 14, "kafka": 15}
    found = groups(pids)
    assert found["gateways"].pids == (11, 12)
    assert found["haproxy"].pids == (13,)
    assert "gateway-1" not in found  # a share of the connections divided by all of them misleads
    assert "presence" not in found  # not running: no empty group
    assert set(edge_groups(pids)) == {"gateways", "haproxy"}
