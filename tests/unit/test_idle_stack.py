"""The idle-stack benchmark's arithmetic and its reading of a gateway's metrics."""

from __future__ import annotations

import pytest

from realchat.loadtest.idle_stack import (
    GatewayIdle,
    IdleStackResult,
    Step,
    active_connections,
    per_connection_kib,
    render,
)


def test_the_active_connections_gauge_is_read_from_the_exposition() -> None:
    text = (
        "# HELP realchat_gateway_active_connections Open WebSocket connections\n"
        "# TYPE realchat_gateway_active_connections gauge\n"
        "realchat_gateway_active_connections_total 3.0\n"
        "realchat_gateway_active_connections 16667.0\n"
    )
    assert active_connections(text) == 16667
    with pytest.raises(ValueError, match="no realchat_gateway_active_connections"):
        active_connections("other_metric 1.0\n")


def test_memory_per_connection_is_growth_over_the_baseline() -> None:
    assert per_connection_kib(100 * 2**20, 100 * 2**20 + 10_000 * 8 * 1024, 10_000) == 8.0
    assert per_connection_kib(1, 2, 0) is None


def test_the_report_sums_what_the_gateways_hold() -> None:
    result = IdleStackResult(
        gateways=2,
        source_addresses=1,
        workers=2,
        baseline_rss_mib={"gateway-1": 100.0, "gateway-2": 100.0, "client": 50.0},
        steps=[
            Step(
                connections=2000,
                failed=0,
                connect_s=3.5,
                gateways={
                    "gateway-1": GatewayIdle(1000, 110.0, 10.24),
                    "gateway-2": GatewayIdle(1000, 105.0, 5.12),
                },
                client_rss_mib=80.0,
                load_average=(1.0, 1.0, 1.0),
            )
        ],
        idle_cores={"gateway-1": 0.01, "gateway-2": 0.02, "client": 0.1},
        machine_cores_busy_idle=0.5,
    )
    text = render(result)
    assert "held at the end: 2000" in text
    assert "gateways grew 15.0 MiB = 7.68 KiB per connection" in text
    assert "gateways 0.030 cores" in text
