"""The report as people read it (printed and saved as .txt beside the JSON)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from realchat.loadtest.fanout.results import FanoutResult, IdleResult


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _load(load: Sequence[float]) -> str:
    return "/".join(f"{v:.1f}" for v in load)


def fanout_table(results: Sequence[FanoutResult]) -> list[str]:
    header = (
        f"{'server':<11}{'entry':<8}{'msg/s':>6}{'deliv/s':>8}{'delivered':>17}{'edge us':>8}"
        f"{'idle-sub':>9}{'haproxy':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'drain s':>8}"
        f"{'cores':>6}  load"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lat = r.latency_ms
        delivered = f"{r.delivered}/{r.expected}" + ("" if r.all_delivered else "!")
        lines.append(
            f"{r.server:<11}{r.entry:<8}{r.rate_msgs_per_s:>6g}{r.deliveries_per_s:>8g}"
            f"{delivered:>17}{_num(r.edge()):>8}{_num(r.edge(busy=True)):>9}"
            f"{_num(r.balancer()):>8}{_num(lat.get('p50'), 1):>8}{_num(lat.get('p95'), 1):>8}"
            f"{_num(lat.get('p99'), 1):>8}{r.drain_s:>8.1f}{_num(r.machine_cores_busy, 2):>6}"
            f"  {_load(r.load_average)}"
        )
    return lines


def components_table(results: Sequence[FanoutResult]) -> list[str]:
    """RealChat's other processes: CPU per published message (us, idle rate subtracted), and
    the load client's."""
    lines = []
    for r in results:
        if r.server != "realchat":
            continue
        parts = [
            f"{name} {_num(cpu.us_per_message_busy, 0)}"
            for name, cpu in r.cpu.items()
            if name != "gateways"
        ]
        lines.append(f"  {r.entry}@{r.rate_msgs_per_s:g}: " + ", ".join(parts))
    return lines


def idle_table(results: Sequence[IdleResult]) -> list[str]:
    lines = []
    for r in results:
        per = ", ".join(
            f"{name} {_num(kib)} KiB (marginal {_num(r.marginal_kib_per_connection.get(name))})"
            for name, kib in r.kib_per_connection.items()
            if name not in ("client", "bench")
        )
        lines.append(
            f"{r.server:<11}{r.entry:<8}{r.connections:>7} connections: {per}; "
            f"load {_load(r.load_average)}" + (f"; error: {r.first_error}" if r.first_error else "")
        )
    return lines


def render(
    fanout: Sequence[FanoutResult],
    idle: Sequence[IdleResult],
    ratios: Mapping[str, float | None],
    cores: int | None,
) -> str:
    lines = ["Fan-out: one channel / conversation, 100-byte payloads"]
    lines += fanout_table(fanout)
    lines.append(
        "edge us: server CPU per delivery (RealChat: gateways only); idle-sub: the same less the "
        "idle rate; haproxy: HAProxy's per delivery; cores: machine cores busy (all processes); "
        "! = not every delivery arrived"
    )
    if others := components_table(fanout):
        lines.append("RealChat, other processes: CPU us per published message, idle subtracted:")
        lines += others
    if idle:
        lines.append("")
        lines.append("Idle connections: RSS growth per connection")
        lines += idle_table(idle)
    if ratios:
        lines.append("")
        lines.append("RealChat / Centrifugo:")
        lines += [f"  {key}: {_num(value, 2)}" for key, value in ratios.items()]
    lines.append(f"{cores} cores; everything (servers and load client) on this one machine.")
    return "\n".join(lines)
