"""What a run measured, as the JSON report holds it, and the RealChat/Centrifugo ratios.

Pure: the figures in, the comparisons out, so the report math is unit-tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from realchat.loadtest.fanout.measure import GroupCpu

#: The process group that is "the edge" of each server, and the balancer in front of it.
EDGE = {"realchat": "gateways", "centrifugo": "centrifugo"}
BALANCER = "haproxy"


@dataclass(frozen=True)
class FanoutResult:
    server: str
    #: "direct" (clients straight to the servers) or "haproxy" (RealChat's balancer between).
    entry: str
    rate_msgs_per_s: float
    subscribers: int
    seconds: float
    published: int
    publish_errors: int
    first_publish_error: str | None
    publish_lag_max_ms: float
    expected: int
    delivered: int
    #: From the first publish until the last delivery (or the drain deadline).
    window_s: float
    #: Seconds after the last publish until everything had arrived (or the deadline).
    drain_s: float
    #: Milliseconds: count, p50, p95, p99, max, mean.
    latency_ms: dict[str, Any]
    cpu: dict[str, GroupCpu]
    machine_cores_busy: float | None
    load_average: tuple[float, float, float]
    connections: dict[str, Any] = field(default_factory=dict)

    @property
    def all_delivered(self) -> bool:
        return self.expected > 0 and self.delivered >= self.expected

    @property
    def deliveries_per_s(self) -> float:
        return self.rate_msgs_per_s * self.subscribers

    def edge(self, busy: bool = False) -> float | None:
        """The server's own CPU per delivery (RealChat: the gateways, without HAProxy)."""
        return _per_delivery(self.cpu.get(EDGE[self.server]), busy)

    def balancer(self, busy: bool = False) -> float | None:
        return _per_delivery(self.cpu.get(BALANCER), busy)

    def to_json(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in self.__dict__.items() if k != "cpu"},
            "all_delivered": self.all_delivered,
            "deliveries_per_s_target": self.deliveries_per_s,
            "edge_us_per_delivery": self.edge(),
            "edge_us_per_delivery_idle_subtracted": self.edge(busy=True),
            "haproxy_us_per_delivery": self.balancer(),
            "haproxy_us_per_delivery_idle_subtracted": self.balancer(busy=True),
            "cpu": {name: cpu.__dict__ for name, cpu in self.cpu.items()},
        }


def _per_delivery(cpu: GroupCpu | None, busy: bool) -> float | None:
    if cpu is None:
        return None
    return cpu.us_per_delivery_busy if busy else cpu.us_per_delivery


@dataclass(frozen=True)
class IdleStep:
    connections: int
    failed: int
    #: Group -> RSS in MiB after the step's settle.
    rss_mib: dict[str, float]


@dataclass(frozen=True)
class IdleResult:
    server: str
    entry: str
    connections: int
    settle_s: float
    baseline_rss_mib: dict[str, float]
    steps: list[IdleStep]
    #: Group -> RSS growth per open connection since the baseline, KiB.
    kib_per_connection: dict[str, float | None]
    #: Group -> the last step's growth per connection it added, KiB.
    marginal_kib_per_connection: dict[str, float | None]
    load_average: tuple[float, float, float]
    first_error: str | None = None

    def edge_kib(self) -> float | None:
        return self.kib_per_connection.get(EDGE[self.server])

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "steps": [s.__dict__ for s in self.steps]}


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs <= 0:
        return None
    return round(ours / theirs, 2)


def ratios(fanout: Sequence[FanoutResult], idle: Sequence[IdleResult]) -> dict[str, float | None]:
    """RealChat over Centrifugo for every RealChat entry and rate that Centrifugo also ran."""
    found: dict[str, float | None] = {}
    peers = {r.rate_msgs_per_s: r for r in fanout if r.server == "centrifugo"}
    for ours in (r for r in fanout if r.server == "realchat"):
        theirs = peers.get(ours.rate_msgs_per_s)
        if theirs is None:
            continue
        key = f"{ours.entry}@{ours.rate_msgs_per_s:g}"
        found[f"edge_cpu_per_delivery {key}"] = ratio(ours.edge(), theirs.edge())
        if ours.entry == "haproxy":
            edge, balancer = ours.edge(), ours.balancer()
            with_balancer = None if edge is None or balancer is None else edge + balancer
            found[f"edge_plus_haproxy_cpu_per_delivery {key}"] = ratio(with_balancer, theirs.edge())
        for q in ("p50", "p95", "p99"):
            found[f"latency_{q} {key}"] = ratio(ours.latency_ms.get(q), theirs.latency_ms.get(q))
    peer_idle = next((r for r in idle if r.server == "centrifugo"), None)
    for ours_idle in (r for r in idle if r.server == "realchat"):
        if peer_idle is not None:
            found[f"idle_kib_per_connection {ours_idle.entry}"] = ratio(
                ours_idle.edge_kib(), peer_idle.edge_kib()
            )
    return found
