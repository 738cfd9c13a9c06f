"""The edge scaling model of docs/scaling.md (bench/scaling.py): its arithmetic, checked on
cases worked out by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.deployment import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "scaling.py"


@pytest.fixture(scope="module")
def scaling() -> ModuleType:
    return load_script(SCRIPT)


def test_gateways_reached_by_one_event(scaling: ModuleType) -> None:
    assert scaling.gateways_reached(1, 10) == 1
    assert scaling.gateways_reached(2, 1) == pytest.approx(1.0)
    assert scaling.gateways_reached(2, 2) == pytest.approx(1.5)  # both on one: 1/2 of the time
    assert scaling.gateways_reached(1000, 10) == pytest.approx(9.955, abs=0.01)


def test_broadcast_reads_every_event_on_every_gateway(scaling: ModuleType) -> None:
    load = scaling.Workload(100_000, messages_per_s_per_1k=10, fanout=2, event_bytes=500)
    costs = scaling.GatewayCosts(filter_us=10, event_us=20, delivery_us=5)
    broadcast = scaling.edge(load, costs, 4, "broadcast")
    routed = scaling.edge(load, costs, 4, "routed")
    # 1,000 msg/s x 500 B x 4 gateways.
    assert broadcast.kafka_read_mb_per_s == 2.0
    assert routed.kafka_read_mb_per_s == pytest.approx(2.0 * 1.75 / 4, abs=0.05)
    # Per gateway: 1,000 x 1.75/4 events with a local recipient (20 us), the rest filtered
    # (10 us) when broadcast, 500 deliveries (5 us).
    with_local = 1000 * 1.75 / 4
    expected = (with_local * 20 + (1000 - with_local) * 10 + 500 * 5) / 1e6
    assert broadcast.gateway_cpu == pytest.approx(expected, abs=0.001)
    assert routed.gateway_cpu == pytest.approx((with_local * 20 + 500 * 5) / 1e6, abs=0.001)


def test_the_smallest_edge_meets_the_cpu_target_unless_filtering_alone_fills_it(
    scaling: ModuleType,
) -> None:
    costs = scaling.GatewayCosts()
    small = scaling.smallest_edge(scaling.Workload(10_000), costs, "broadcast")
    assert small.gateways == 1
    assert small.gateway_cpu <= costs.target_utilisation
    huge = scaling.Workload(10_000_000)
    routed = scaling.smallest_edge(huge, costs, "routed")
    assert routed.gateway_cpu <= costs.target_utilisation
    broadcast = scaling.smallest_edge(huge, costs, "broadcast")
    assert broadcast.gateway_cpu > costs.target_utilisation  # no gateway count is enough


def test_the_script_prints_the_table() -> None:
    shown = subprocess.run(
        [sys.executable, str(SCRIPT), "--connections", "1000000"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "| 1,000,000 |" in shown.stdout
    assert "routed" in shown.stdout
