"""The load generator's open-loop schedule: latency counts from when a send was due."""

from __future__ import annotations

from realchat.loadtest.worker import sends_due


def test_an_open_loop_schedule_sends_each_message_at_its_scheduled_time() -> None:
    # Send k is scheduled at k / rate: a sender that waited until k + 1 were "due" by
    # int(t * rate) would send each one a whole interval late and report that as latency.
    assert sends_due(0.0, rate=10, total=100) == 1
    assert sends_due(0.099, rate=10, total=100) == 1
    assert sends_due(0.1, rate=10, total=100) == 2
    assert sends_due(5.0, rate=10, total=30) == 30
