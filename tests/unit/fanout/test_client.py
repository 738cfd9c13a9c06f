"""The client worker's bookkeeping: deliveries counted per tag, latencies from the stamp."""

from __future__ import annotations

import pytest
from hdrh.histogram import HdrHistogram

from realchat.loadtest.fanout.client import Deliveries, new_session
from realchat.loadtest.fanout.payload import Stamp
from realchat.loadtest.fanout.session_centrifugo import CentrifugoSession
from realchat.loadtest.fanout.session_realchat import RealChatSession


def test_deliveries_are_counted_per_tag_with_latency_from_the_publish_time() -> None:
    deliveries = Deliveries()
    now = 10_000_000_000
    deliveries.record([Stamp("a", 1, now - 5_000_000), Stamp("b", 1, now - 1_000)], now)
    deliveries.record([Stamp("a", 2, now - 15_000_000)], now)
    assert deliveries.counts == {"a": 2, "b": 1}
    merged = HdrHistogram(1, 600_000_000, 3)
    merged.decode_and_add(deliveries.encoded("a"))
    assert merged.get_total_count() == 2
    assert merged.get_value_at_percentile(50) == pytest.approx(5_000, rel=0.01)  # microseconds
    assert merged.get_max_value() == pytest.approx(15_000, rel=0.01)
    assert deliveries.encoded("never") == ""


def test_a_stamp_from_the_future_counts_as_the_shortest_latency_not_a_crash() -> None:
    deliveries = Deliveries()
    deliveries.record([Stamp("a", 1, 2_000)], 1_000)
    assert deliveries.counts == {"a": 1}


def test_sessions_by_server_kind() -> None:
    assert isinstance(new_session("realchat", "t", "c"), RealChatSession)
    assert isinstance(new_session("centrifugo", "t", "bench:c"), CentrifugoSession)
    with pytest.raises(ValueError, match="unknown server kind"):
        new_session("nats", "t", "c")
