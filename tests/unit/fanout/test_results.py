"""The report's figures: edge CPU (without the balancer), completeness, RealChat/Centrifugo."""

from __future__ import annotations

from typing import Any

from realchat.loadtest.fanout.measure import GroupCpu
from realchat.loadtest.fanout.render import render
from realchat.loadtest.fanout.results import FanoutResult, IdleResult, IdleStep, ratio, ratios


def _cpu(us: float) -> GroupCpu:
    return GroupCpu(1.0, 0.9, us, us * 0.9, us * 1000, us * 900, 0.5)


def _fanout(
    server: str, entry: str, rate: float, cpu: dict[str, GroupCpu], **kw: Any
) -> FanoutResult:
    values: dict[str, Any] = {
        "server": server,
        "entry": entry,
        "rate_msgs_per_s": rate,
        "subscribers": 1000,
        "seconds": 30.0,
        "published": int(rate * 30),
        "publish_errors": 0,
        "first_publish_error": None,
        "publish_lag_max_ms": 1.0,
        "expected": int(rate * 30) * 1000,
        "delivered": int(rate * 30) * 1000,
        "window_s": 30.5,
        "drain_s": 0.5,
        "latency_ms": {"count": 1, "p50": 20.0, "p95": 40.0, "p99": 60.0},
        "cpu": cpu,
        "machine_cores_busy": 1.5,
        "load_average": (1.0, 2.0, 3.0),
    }
    return FanoutResult(**{**values, **kw})


def _idle(server: str, kib: dict[str, float | None]) -> IdleResult:
    return IdleResult(
        server, "direct", 10_000, 30.0, {}, [IdleStep(10_000, 0, {})], kib, kib, (1.0, 1.0, 1.0)
    )


PEER = _fanout("centrifugo", "direct", 50, {"centrifugo": _cpu(10.0)})
OURS = _fanout(
    "realchat",
    "haproxy",
    50,
    {"gateways": _cpu(40.0), "haproxy": _cpu(15.0)},
    latency_ms={"count": 1, "p50": 200.0, "p95": 400.0, "p99": 900.0},
)


def test_the_edge_is_the_server_alone_and_the_balancer_is_apart() -> None:
    assert OURS.edge() == 40.0
    assert OURS.balancer() == 15.0
    assert PEER.edge() == 10.0
    assert PEER.balancer() is None
    assert OURS.edge(busy=True) == 36.0


def test_a_missing_delivery_is_flagged() -> None:
    assert PEER.all_delivered
    short = _fanout("centrifugo", "direct", 50, {}, delivered=1_499_999)
    assert not short.all_delivered
    assert not _fanout("centrifugo", "direct", 50, {}, expected=0, delivered=0).all_delivered


def test_ratios_pair_runs_at_the_same_rate() -> None:
    other_rate = _fanout("realchat", "direct", 10, {"gateways": _cpu(50.0)})
    found = ratios(
        [PEER, OURS, other_rate],
        [_idle("centrifugo", {"centrifugo": 40.0}), _idle("realchat", {"gateways": 30.0})],
    )
    assert found["edge_cpu_per_delivery haproxy@50"] == 4.0
    assert found["edge_plus_haproxy_cpu_per_delivery haproxy@50"] == 5.5
    assert found["latency_p95 haproxy@50"] == 10.0
    assert found["idle_kib_per_connection direct"] == 0.75
    assert not any("@10" in key for key in found)  # Centrifugo did not run at 10 msg/s


def test_ratio_of_nothing_is_nothing() -> None:
    assert ratio(None, 1.0) is None
    assert ratio(1.0, 0.0) is None


def test_the_json_and_text_carry_the_headline_figures() -> None:
    document = OURS.to_json()
    assert document["edge_us_per_delivery"] == 40.0
    assert document["haproxy_us_per_delivery"] == 15.0
    assert document["all_delivered"] is True
    assert document["deliveries_per_s_target"] == 50_000
    text = render([PEER, OURS], [_idle("realchat", {"gateways": 30.0})], {"x": 2.0}, 2)
    assert "realchat   haproxy" in text
    assert "gateways 30.0 KiB" in text
