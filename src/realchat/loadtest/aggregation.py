"""The coordinator's view of its workers' ticks: the run's timeline (one point a second), HDR
histograms per interval, phase and run, and the counters summed over workers.
"""

from __future__ import annotations

import time
from typing import Any

from hdrh.histogram import HdrHistogram

from realchat.loadtest.histograms import HISTOGRAMS, new_histogram
from realchat.loadtest.messages import Tick


class Aggregate:
    """Worker ticks -> a timeline (one point a second) and totals per phase."""

    def __init__(self) -> None:
        self.interval = {name: new_histogram() for name in HISTOGRAMS}
        self.phase = {name: new_histogram() for name in HISTOGRAMS}
        self.run = {name: new_histogram() for name in HISTOGRAMS}
        self.workers: dict[int, Tick] = {}
        self.timeline: list[dict[str, Any]] = []
        self._previous: dict[str, float] = {}
        self.started = time.time()
        self.phase_name = "connect"

    def on_tick(self, tick: Tick) -> None:
        self.workers[tick.worker] = tick
        for name, encoded in tick.hist.items():
            if encoded:
                for target in (self.interval, self.phase, self.run):
                    target[name].decode_and_add(encoded)

    def totals(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        errors: dict[str, int] = {}
        disconnects: dict[str, int] = {}
        for tick in self.workers.values():
            for source, target in (
                (tick.counts, counts),
                (tick.errors, errors),
                (tick.disconnects, disconnects),
            ):
                for name, value in source.items():
                    target[name] = target.get(name, 0) + value
        ticks = self.workers.values()
        return {
            "counts": counts,
            "errors": errors,
            "disconnects": disconnects,
            "connected": sum(t.connected for t in ticks),
            "pending": sum(t.pending for t in ticks),
            "seq_conflicts": sum(t.seq_conflicts for t in ticks),
            "app_duplicates": sum(t.app_duplicates for t in ticks),
            "loop_lag_ms": max((t.loop_lag_ms for t in ticks), default=0.0),
            "gc_pause_ms": max((t.gc_pause_ms for t in ticks), default=0.0),
        }

    def point(self, server: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        totals = self.totals()
        counts = totals["counts"]
        elapsed = now - self._previous.get("t", self.started)
        rates = {}
        for key in ("sent", "send_ok", "delivered", "reconnects"):
            value = float(counts.get(key, 0))
            rates[f"{key}_per_s"] = round((value - self._previous.get(key, 0.0)) / elapsed, 1)
            self._previous[key] = value
        self._previous["t"] = now
        point = {
            "t": round(now - self.started, 1),
            "phase": self.phase_name,
            "connected": totals["connected"],
            "pending_sends": totals["pending"],
            "worker_loop_lag_ms": totals["loop_lag_ms"],
            "worker_gc_pause_ms": totals["gc_pause_ms"],
            **rates,
            "latency_ms": summarize(self.interval["live"]),
            "server": server,
        }
        for hist in self.interval.values():
            hist.reset()
        self.timeline.append(point)
        return point


def summarize(hist: HdrHistogram) -> dict[str, Any]:
    """Count and percentiles (ms) of a histogram of microseconds."""
    if hist.get_total_count() == 0:
        return {"count": 0}
    return {
        "count": hist.get_total_count(),
        "p50": round(hist.get_value_at_percentile(50) / 1000, 2),
        "p95": round(hist.get_value_at_percentile(95) / 1000, 2),
        "p99": round(hist.get_value_at_percentile(99) / 1000, 2),
        "max": round(hist.get_max_value() / 1000, 2),
        "mean": round(hist.get_mean_value() / 1000, 2),
    }


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The counters that changed from `before` to `after` (two `Aggregate.totals`)."""
    found: dict[str, Any] = {}
    for key in ("counts", "errors", "disconnects"):
        found[key] = {
            name: value - before[key].get(name, 0)
            for name, value in after[key].items()
            if value - before[key].get(name, 0)
        }
    return found
