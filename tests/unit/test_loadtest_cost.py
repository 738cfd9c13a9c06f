"""CPU per message and per delivery of each component, from two snapshots."""

from __future__ import annotations

from realchat.loadtest.cost import cost_lines, cpu_cost, idle_rates


def test_cost_per_component_group_and_total() -> None:
    before = {"gateway-1": 10.0, "gateway-2": 10.0, "chat": 5.0, "loadgen-0": 1.0}
    after = {
        "gateway-1": 13.0,
        "gateway-2": 12.0,
        "chat": 6.0,
        "loadgen-0": 3.0,
        "postgres": 0.5,  # appeared after the first snapshot: all of it counts
    }
    cost = cpu_cost(before, after, messages=1_000, deliveries=20_000)
    assert cost["gateway-1"] == {"cpu_s": 3.0, "us_per_message": 3000.0, "us_per_delivery": 150.0}
    assert cost["gateways"]["cpu_s"] == 5.0
    assert "generator" not in cost  # one worker: no group line
    assert cost["postgres"]["cpu_s"] == 0.5
    assert cost["total"]["cpu_s"] == 3.0 + 2.0 + 1.0 + 2.0 + 0.5
    assert next(iter(cost)) == "total"  # dearest first
    assert len(cost_lines(cost)) == len(cost)


def test_no_work_means_no_ratio() -> None:
    cost = cpu_cost({"chat": 1.0}, {"chat": 1.5}, messages=0, deliveries=0)
    assert cost["chat"]["us_per_message"] is None
    assert cost["chat"]["us_per_delivery"] is None
    assert "-" in cost_lines(cost)[0]


def test_a_restarted_process_does_not_count_negative() -> None:
    cost = cpu_cost({"gateway-1": 50.0}, {"gateway-1": 2.0}, messages=10, deliveries=10)
    assert cost["gateway-1"]["cpu_s"] == 0.0


def test_the_idle_share_is_taken_out() -> None:
    rates = idle_rates({"kafka": 10.0, "chat": 1.0}, {"kafka": 11.0, "chat": 1.0}, seconds=5.0)
    assert rates == {"kafka": 0.2, "chat": 0.0}
    # 20 s of a phase: kafka spent 6 s, of which 4 s it would have spent idle anyway.
    cost = cpu_cost(
        {"kafka": 20.0, "chat": 2.0},
        {"kafka": 26.0, "chat": 3.0},
        messages=100,
        deliveries=100,
        idle=rates,
        seconds=20.0,
    )
    assert cost["kafka"]["cpu_s"] == 2.0
    assert cost["chat"]["cpu_s"] == 1.0
    assert cost["kafka"]["us_per_message"] == 20_000.0
