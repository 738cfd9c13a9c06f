"""How far RealChat's edge goes, on paper: Kafka read volume and gateway CPU for N gateways.

    .venv/bin/python bench/scaling.py                       # the table in docs/scaling.md
    .venv/bin/python bench/scaling.py --connections 1000000 --json

Decision 11 has every gateway read every event (a consumer group per gateway) and drop those with
no local recipient. That costs each gateway `filter_us` of CPU per event, and the brokers send
every event N times. The alternative modelled here, *routing*, sends an event only to the
gateways that hold one of its recipients (users partitioned over gateway pools, each pool reading
its own topic keyed by user): with f recipient devices spread evenly over N gateways, an event
reaches N * (1 - (1 - 1/N)^f) of them.

The per-event and per-delivery costs are measured (docs/benchmarks.md: `realchat bench
dispatch`, `make bench-fanout`); everything else follows from arithmetic, printed with its inputs
so that a changed benchmark changes the table.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Workload:
    connections: int
    #: Messages per second per thousand connections (the plan: 1-3k msg/s for 10k connections).
    messages_per_s_per_1k: float = 100.0
    #: Devices that receive one message (members' devices, the sender's other devices included).
    fanout: float = 10.0
    #: Bytes of one event record on the bus (key, headers, JSON value).
    event_bytes: int = 400

    @property
    def messages_per_s(self) -> float:
        return self.connections / 1000 * self.messages_per_s_per_1k


@dataclass(frozen=True)
class GatewayCosts:
    """One gateway process (one core): measured figures, overridable on the command line."""

    #: CPU to decode and drop an event with no local recipient (bench dispatch: 13.5 us).
    filter_us: float = 13.5
    #: CPU to decode an event that has local recipients, before its deliveries (bench dispatch,
    #: 2 local recipients: 29.2 us per event less 2 deliveries).
    event_us: float = 23.0
    #: CPU per delivery, frame to one connection's socket (bench dispatch, 1,000 on sockets).
    delivery_us: float = 3.0
    #: Memory per idle connection (bench idle at 10,000).
    connection_kib: float = 15.8
    #: A gateway is sized to run at this share of its core (headroom for bursts and reconnects).
    target_utilisation: float = 0.6
    #: Connections one gateway holds at most (file descriptors, memory per process).
    max_connections: int = 50_000


@dataclass(frozen=True)
class Edge:
    mode: str
    gateways: int
    #: Gateways that receive one event.
    gateways_per_event: float
    kafka_read_mb_per_s: float
    gateway_cpu: float
    gateway_memory_gib: float
    deliveries_per_s_per_gateway: float


def gateways_reached(gateways: int, fanout: float) -> float:
    """Expected gateways holding at least one of `fanout` recipients spread evenly over them."""
    if gateways <= 1:
        return float(gateways)
    return gateways * (1 - (1 - 1 / gateways) ** fanout)


def edge(workload: Workload, costs: GatewayCosts, gateways: int, mode: str) -> Edge:
    """The edge with `gateways` processes, events broadcast to all or routed to those needed."""
    rate = workload.messages_per_s
    reached = gateways_reached(gateways, workload.fanout)
    read_per_event = gateways if mode == "broadcast" else reached
    deliveries = rate * workload.fanout / gateways
    # Of the events a gateway reads, those with a local recipient cost event_us, others filter_us.
    with_local = rate * reached / gateways
    without_local = rate - with_local if mode == "broadcast" else 0.0
    cpu_us = (
        with_local * costs.event_us + without_local * costs.filter_us
    ) + deliveries * costs.delivery_us
    return Edge(
        mode=mode,
        gateways=gateways,
        gateways_per_event=round(read_per_event, 2),
        kafka_read_mb_per_s=round(rate * read_per_event * workload.event_bytes / 1e6, 1),
        gateway_cpu=round(cpu_us / 1e6, 3),
        gateway_memory_gib=round(workload.connections / gateways * costs.connection_kib / 2**20, 2),
        deliveries_per_s_per_gateway=round(deliveries),
    )


def smallest_edge(workload: Workload, costs: GatewayCosts, mode: str) -> Edge:
    """The fewest gateways that hold every connection and stay under the CPU target."""
    gateways = max(1, math.ceil(workload.connections / costs.max_connections))
    while True:
        found = edge(workload, costs, gateways, mode)
        if found.gateway_cpu <= costs.target_utilisation:
            return found
        if mode == "broadcast" and gateways > 1:
            # Past the point where filtering alone fills the core, adding gateways cannot help.
            filtering = workload.messages_per_s * costs.filter_us / 1e6
            if filtering >= costs.target_utilisation:
                return found
        gateways += 1
        if gateways > 100_000:
            return found


def table(
    connections: list[int], workload: Workload, costs: GatewayCosts
) -> list[dict[str, object]]:
    rows = []
    for count in connections:
        load = Workload(
            count, workload.messages_per_s_per_1k, workload.fanout, workload.event_bytes
        )
        for mode in ("broadcast", "routed"):
            found = smallest_edge(load, costs, mode)
            rows.append(
                {"connections": count, "messages_per_s": load.messages_per_s, **asdict(found)}
            )
    return rows


def render(rows: list[dict[str, object]]) -> str:
    head = (
        "| connections | msg/s | mode | gateways | gateways per event | Kafka reads MB/s "
        "| CPU per gateway (cores) | deliveries/s per gateway | memory per gateway GiB |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['connections']:,} | {r['messages_per_s']:,.0f} | {r['mode']} | {r['gateways']} "
            f"| {r['gateways_per_event']} | {r['kafka_read_mb_per_s']:,} | {r['gateway_cpu']} "
            f"| {r['deliveries_per_s_per_gateway']:,} | {r['gateway_memory_gib']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--connections", type=int, nargs="*", default=[10_000, 1_000_000, 10_000_000]
    )
    parser.add_argument(
        "--messages-per-s-per-1k", type=float, default=Workload.messages_per_s_per_1k
    )
    parser.add_argument("--fanout", type=float, default=Workload.fanout)
    parser.add_argument("--event-bytes", type=int, default=Workload.event_bytes)
    parser.add_argument("--filter-us", type=float, default=GatewayCosts.filter_us)
    parser.add_argument("--event-us", type=float, default=GatewayCosts.event_us)
    parser.add_argument("--delivery-us", type=float, default=GatewayCosts.delivery_us)
    parser.add_argument("--connection-kib", type=float, default=GatewayCosts.connection_kib)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workload = Workload(0, args.messages_per_s_per_1k, args.fanout, args.event_bytes)
    costs = GatewayCosts(args.filter_us, args.event_us, args.delivery_us, args.connection_kib)
    rows = table(args.connections, workload, costs)
    if args.json:
        print(
            json.dumps(
                {"workload": asdict(workload), "costs": asdict(costs), "rows": rows}, indent=2
            )
        )
    else:
        print(f"workload: {asdict(workload)}\ngateway costs: {asdict(costs)}\n")
        print(render(rows))


if __name__ == "__main__":
    main()
