"""Load-test reports: the whole document as JSON, a self-contained HTML page with line charts
drawn as inline SVG (no plotting dependency), and a short text summary."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from realchat.loadtest.cost import cost_lines

Series = tuple[str, list[tuple[float, float]]]
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def write_reports(document: dict[str, Any], output_dir: Path, name: str) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"loadtest-{name}"
    paths = [output_dir / f"{stem}.json", output_dir / f"{stem}.html", output_dir / f"{stem}.txt"]
    paths[0].write_text(json.dumps(document, indent=1) + "\n")
    paths[1].write_text(html_report(document))
    paths[2].write_text(summary(document) + "\n")
    return paths


def _series(
    timeline: list[dict[str, Any]], value: Callable[[dict[str, Any]], Any]
) -> list[tuple[float, float]]:
    points = []
    for p in timeline:
        v = value(p)
        if v is not None:
            points.append((float(p["t"]), float(v)))
    return points


def svg_chart(
    title: str, unit: str, series: list[Series], width: int = 900, height: int = 220
) -> str:
    left, right, top, bottom = 60, 150, 24, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="15" font-size="13" font-weight="bold">'
        f"{html.escape(title)} ({html.escape(unit)})</text>",
    ]
    if not xs:
        parts.append(f'<text x="{left}" y="{top + 20}">no data</text></svg>')
        return "".join(parts)
    x0, x1 = min(xs), max(xs) or 1.0
    y1 = max(ys) * 1.05 or 1.0
    span = (x1 - x0) or 1.0

    def px(x: float) -> float:
        return left + (x - x0) / span * plot_w

    def py(y: float) -> float:
        return top + plot_h - y / y1 * plot_h

    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
    )
    for k in range(5):
        y = y1 * k / 4
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
            'stroke="#eee"/>'
        )
        parts.append(f'<text x="{left - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.4g}</text>')
    for k in range(6):
        x = x0 + span * k / 5
        parts.append(
            f'<text x="{px(x):.1f}" y="{height - 8}" text-anchor="middle">{x:.0f} s</text>'
        )
    for n, (label, pts) in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        if pts:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>'
            )
        parts.append(
            f'<text x="{left + plot_w + 8}" y="{top + 14 * (n + 1)}" fill="{colour}">'
            f"{html.escape(label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def charts(document: dict[str, Any]) -> list[str]:
    t = document.get("timeline", [])

    def lat(key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda p: p["latency_ms"].get(key)

    def server(key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda p: p["server"].get(key)

    def rate(key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda p: p[f"{key}_per_s"]

    names = sorted({n for p in t for n in p["server"].get("processes", {})})

    def rss(name: str) -> Callable[[dict[str, Any]], Any]:
        return lambda p: p["server"].get("processes", {}).get(name, {}).get("rss_mb")

    def cpu(name: str) -> Callable[[dict[str, Any]], Any]:
        return lambda p: p["server"].get("processes", {}).get(name, {}).get("cpu_pct")

    return [
        svg_chart(
            "Delivery latency, live recipients, per second",
            "ms",
            [(k, _series(t, lat(k))) for k in ("p50", "p95", "p99", "max")],
        ),
        svg_chart(
            "Rates",
            "per s",
            [(k, _series(t, rate(k))) for k in ("sent", "send_ok", "delivered", "reconnects")],
        ),
        svg_chart(
            "Connections",
            "open",
            [
                ("clients connected", _series(t, lambda p: p["connected"])),
                ("gateway gauge", _series(t, server("gateway_connections"))),
            ],
        ),
        svg_chart("RSS", "MiB", [(n, _series(t, rss(n))) for n in names]),
        svg_chart(
            "CPU",
            "% of one core",
            [
                ("machine (% of all)", _series(t, server("machine_cpu_pct"))),
                *((n, _series(t, cpu(n))) for n in names),
            ],
        ),
        svg_chart(
            "Kafka lag, outbox backlog, lock waits",
            "count",
            [
                ("kafka lag", _series(t, server("kafka_lag"))),
                ("outbox pending", _series(t, server("outbox_pending"))),
                ("pg lock waits", _series(t, server("pg_lock_waits"))),
                ("pending sends", _series(t, lambda p: p["pending_sends"])),
            ],
        ),
    ]


def html_report(document: dict[str, Any]) -> str:
    body = "\n".join(f"<div>{c}</div>" for c in charts(document))
    text = html.escape(summary(document))
    title = html.escape(f"RealChat load test: {document.get('name')}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body style='font-family:sans-serif;max-width:960px;margin:auto'><h1>{title}</h1>"
        f"<pre>{text}</pre>{body}</body></html>\n"
    )


def _latency(lat: dict[str, Any]) -> str:
    if not lat.get("count"):
        return "no samples"
    return (
        f"p50 {lat['p50']} / p95 {lat['p95']} / p99 {lat['p99']} / max {lat['max']} ms "
        f"({lat['count']} samples)"
    )


def summary(document: dict[str, Any]) -> str:
    setup = document.get("setup", {})
    machine = document.get("machine", {})
    lines = [
        f"RealChat load test '{document.get('name')}' ({document.get('scenario')}), "
        f"{document.get('started_at')}",
        f"machine: {machine.get('cores')} cores, {machine.get('memory_gib')} GiB, "
        f"{machine.get('note')}",
        f"setup: {setup.get('users')} users ({setup.get('register_s')} s), "
        f"{setup.get('conversations')} conversations ({setup.get('group_conversations')} groups), "
        f"{setup.get('connected')} connections in {setup.get('connect_s')} s",
    ]
    for phase in document.get("phases", []):
        c = phase["correctness"]
        lines += [
            f"phase {phase['phase']}: target {phase['target_rate']:g} msg/s for "
            f"{phase['seconds']:g} s -> sent {phase['sent_per_s']}/s, acknowledged "
            f"{phase['send_ok_per_s']}/s, delivered {phase['delivered_per_s']}/s "
            f"(drained {phase['drain_s']} s after the window)",
            f"  latency live: {_latency(phase['latency_ms']['live'])}",
            f"  latency backfill/slow: {_latency(phase['latency_ms']['backfill'])}",
            f"  send -> send_ok: {_latency(phase['latency_ms']['send_ok'])}",
            f"  correctness: lost {c['lost']}, order violations {c['order_violations']}, "
            f"unverified clients {c['unverified_clients']}, duplicates to application "
            f"{c['duplicates_to_application']}, seq conflicts {c['seq_conflicts']}, gaps "
            f"{c['gaps']}, duplicate frames suppressed {c['duplicate_frames_suppressed']}, "
            f"{c['messages_checked']} (client, message) pairs checked",
            f"  disconnects: {phase['disconnects']}; errors: {phase['errors']}; "
            f"reconnects {phase['reconnects']}",
            f"  passed (p95 < 100 ms, no loss, >= 95 % of the rate acknowledged): "
            f"{phase['passed']}",
        ]
        if cost := phase.get("cpu_cost"):
            lines.append(
                "  CPU per component (send window and drain, less the idle rate measured "
                "before the first phase):"
            )
            lines += cost_lines(cost)
    if (idle := document.get("idle")) is not None:
        lines.append(
            f"idle: {idle['connections']} connections, gateways "
            f"{idle['gateway_kib_per_connection']} KiB per connection"
        )
    if sat := document.get("saturation"):
        lines.append(f"saturation: {sat['verdict']}")
        top = list(sat["process_cpu_pct"].items())[:6]
        lines.append("  CPU (% of one core): " + ", ".join(f"{n} {v}" for n, v in top))
    if (stab := document.get("stability")) is not None:
        lines.append(f"stability: {stab}")
    lines.append(f"asyncio tasks: {document.get('asyncio_tasks')}")
    ended = document.get("processes_ended") or {}
    lines.append(
        "processes that ended during the run: "
        + (", ".join(f"{name} ({how})" for name, how in ended.items()) or "none")
    )
    correctness = document.get("correctness", {})
    if document.get("scenario") != "idle":
        lines.append(f"correctness overall: {'OK' if correctness.get('ok') else 'NOT OK'}")
    else:
        lines.append("correctness overall: not applicable (idle: no messages are sent)")
    return "\n".join(lines)
