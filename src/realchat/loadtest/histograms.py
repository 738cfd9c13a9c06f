"""The HDR latency histograms every load tool records (the `tools` extra's hdrhistogram): one
range and precision, so the coordinator can merge what the workers encode."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

#: Latencies are recorded in microseconds, up to 10 minutes, 3 significant digits.
HIST_MAX_US = 600_000_000
HIST_DIGITS = 3
#: The load generator's histograms, by what they time.
HISTOGRAMS = ("live", "backfill", "send_ok")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX_US, HIST_DIGITS)


def record_us(histogram: HdrHistogram, latency_us: int) -> None:
    """Clamped into the histogram's range: a clock step never loses a sample."""
    histogram.record_value(min(max(1, latency_us), HIST_MAX_US))
