"""A rate-limited send is written again after growing delays, until its time is up."""

from __future__ import annotations

import asyncio

from realchat.client.pending import RATE_LIMITED_RETRY_MAX_S, PendingSend
from realchat.contract.frames import SendFrame


def test_a_rate_limited_send_retries_with_growing_delays_until_its_time_is_up() -> None:
    loop = asyncio.new_event_loop()
    try:
        pending = PendingSend(SendFrame("c", "m1", "hi"), loop.create_future())
        delays = [pending.rate_limited(now, give_up_after_s=10) for now in (0.0, 1.0, 2.0, 3.0)]
        assert all(d is not None and 0 < d <= RATE_LIMITED_RETRY_MAX_S for d in delays)
        assert pending.link is None  # written again on whatever link is current then
        assert pending.rate_limited(10.0, give_up_after_s=10) is None  # from the first refusal
    finally:
        loop.close()
