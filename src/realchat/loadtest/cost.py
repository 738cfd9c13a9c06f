"""CPU per message and per delivery of each component over a load-test phase.

The currency of every performance decision here: the whole stack and the load generator share
one machine, so a component's latency says little about what it costs; its CPU seconds divided by
the work done say which one to make cheaper next. Counts include the whole process tree of a
component and its reaped children (PostgreSQL's backends that came and went).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Components summed into one line as well as listed one by one.
GROUPS = {"gateways": "gateway", "generator": "loadgen-", "publishers": "outbox-publisher"}


def idle_rates(
    before: Mapping[str, float], after: Mapping[str, float], seconds: float
) -> dict[str, float]:
    """Component (or group) -> CPU seconds per second it spends with every client connected
    and no traffic (keepalives, polls, heartbeats): what a phase would have cost without
    messages. A count that went down (a process gone) is no negative cost: 0."""
    return {
        name: max(0.0, after[name] - before.get(name, 0.0)) / seconds
        for name in after
        if seconds > 0
    }


def cpu_cost(
    before: Mapping[str, float],
    after: Mapping[str, float],
    messages: int,
    deliveries: int,
    idle: Mapping[str, float] | None = None,
    seconds: float = 0.0,
) -> dict[str, dict[str, Any]]:
    """Component -> CPU seconds spent between two `ServerSampler.cpu_seconds()` snapshots, and
    microseconds per acknowledged message and per delivery (None when there were none). With
    the `idle` rates and the `seconds` between the snapshots, the idle share is taken out first:
    at low rates it would otherwise dwarf the cost of the messages."""
    idle = idle or {}
    spent = {
        name: max(0.0, after[name] - before.get(name, 0.0) - idle.get(name, 0.0) * seconds)
        for name in after
    }
    for group, prefix in GROUPS.items():
        members = [name for name in spent if name.startswith(prefix)]
        if len(members) > 1:
            spent[group] = sum(spent[name] for name in members)
    spent["total"] = sum(v for n, v in spent.items() if n not in GROUPS and n != "total")
    return {
        name: {
            "cpu_s": round(seconds, 2),
            "us_per_message": round(seconds / messages * 1e6, 1) if messages else None,
            "us_per_delivery": round(seconds / deliveries * 1e6, 2) if deliveries else None,
        }
        for name, seconds in sorted(spent.items(), key=lambda item: -item[1])
    }


def cost_lines(cost: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The text report's lines: one component per line, dearest first."""
    return [
        f"    {name:<20} {c['cpu_s']:>8.2f} s  {c['us_per_message'] or '-':>10} us/message  "
        f"{c['us_per_delivery'] or '-':>8} us/delivery"
        for name, c in cost.items()
    ]
