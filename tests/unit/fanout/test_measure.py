"""CPU and memory accounting of a window: per delivery, idle rate subtracted, cores busy."""

from __future__ import annotations

import os

import pytest

from realchat.loadtest.fanout.measure import (
    Group,
    Snapshot,
    cores_busy,
    group_cpu,
    idle_rates,
    kib_per_connection,
    snapshot,
)


def _snap(at: float, cpu: dict[str, float], busy: int = 0, total: int = 0) -> Snapshot:
    return Snapshot(at, cpu, dict.fromkeys(cpu, 0), busy, total)


def test_cpu_per_delivery_with_and_without_the_idle_rate() -> None:
    before = _snap(100.0, {"gateways": 10.0, "chat": 5.0})
    after = _snap(110.0, {"gateways": 13.0, "chat": 5.5})
    found = group_cpu(before, after, {"gateways": 0.05}, deliveries=100_000, messages=100)
    gateways = found["gateways"]
    assert gateways.cpu_s == 3.0
    assert gateways.busy_cpu_s == 2.5  # 0.05 s/s idle over the 10 s window
    assert gateways.us_per_delivery == 30.0
    assert gateways.us_per_delivery_busy == 25.0
    assert gateways.cores == 0.3
    assert found["chat"].us_per_message == 5000.0


def test_idle_subtraction_never_goes_below_zero_and_nothing_delivered_has_no_rate() -> None:
    before = _snap(0.0, {"centrifugo": 1.0})
    after = _snap(10.0, {"centrifugo": 1.1})
    found = group_cpu(before, after, {"centrifugo": 0.5}, deliveries=0, messages=0)["centrifugo"]
    assert found.busy_cpu_s == 0.0
    assert found.us_per_delivery is None
    assert found.us_per_message is None


def test_idle_rates_are_cpu_seconds_per_second() -> None:
    rates = idle_rates(_snap(0.0, {"a": 1.0}), _snap(4.0, {"a": 1.2}))
    assert rates["a"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="no length"):
        idle_rates(_snap(1.0, {"a": 1.0}), _snap(1.0, {"a": 1.0}))


def test_cores_busy_scales_the_busy_share_by_the_cores() -> None:
    before = _snap(0.0, {}, busy=1000, total=2000)
    after = _snap(1.0, {}, busy=1150, total=2200)
    assert cores_busy(before, after, cores=2) == 1.5
    assert cores_busy(after, after, cores=2) is None


def test_kib_per_connection() -> None:
    assert kib_per_connection(100 * 2**20, 110 * 2**20, 1024) == 10.0
    assert kib_per_connection(0, 1, 0) is None


def test_snapshot_reads_this_process_alone_or_with_its_children() -> None:
    found = snapshot({"me": Group((os.getpid(),), children=False), "gone": Group((2**22 + 7,))})
    assert found.rss["me"] > 0
    assert found.cpu_s["me"] > 0
    assert found.rss["gone"] == 0  # a pid that is not there counts nothing, it does not fail
