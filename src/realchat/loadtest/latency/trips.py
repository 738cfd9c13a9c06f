"""One message's trip through the stack, as moments on one clock, and what they add up to.

Every process of the dev stack runs on this machine, so their wall clocks are one clock: the
sender's and the receiver's stamps (the benchmark), the statement's start and the row's
`clock_timestamp()` (PostgreSQL), the Kafka record's create time (the publisher's `produce()`,
in whole milliseconds) and a bench consumer's read of the record. The differences between
consecutive moments are the stages of the path; a moment missing (no database at hand, the
record not seen) leaves its two stages out for that message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from realchat.loadtest.bench_write import Latency, summarize_latencies

#: Issue 17's acceptance for a 1:1 message on an idle stack, send to delivery.
TARGET_P50_MS = 10.0
TARGET_P95_MS = 20.0


@dataclass(frozen=True)
class Trip:
    """One message's moments, in Unix seconds (None: not observed)."""

    n: int
    #: The sender handed the `send` frame to its socket.
    sent: float
    #: The sender read `send_ok`.
    acked: float | None = None
    #: The receiver read the `message` frame.
    delivered: float | None = None
    #: The chat service's statement began (the outbox row's `created_at`, `now()`).
    statement: float | None = None
    #: The message row was written, under the conversation's row lock (its `created_at`).
    row: float | None = None
    #: The outbox publisher handed the record to its producer (the record's create time, ms).
    produced: float | None = None
    #: A consumer configured like a gateway's read the record.
    on_bus: float | None = None
    #: The publisher marked the row published, after the broker's acknowledgement.
    marked: float | None = None


#: The path's stages in order: (name, from moment, to moment). They add up to send -> delivery
#: when every moment is known.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("client -> chat statement (WebSocket, gateway, gRPC, chat service)", "sent", "statement"),
    ("statement -> row written", "statement", "row"),
    ("row -> produce (commit, wake-up, publisher reads the batch)", "row", "produced"),
    ("produce -> a consumer reads it (Kafka)", "produced", "on_bus"),
    ("consumer -> client (gateway consumer, dispatch, write)", "on_bus", "delivered"),
)
#: Beside the path: the sender's acknowledgement, and the publisher's wait for the broker.
SIDE_STAGES: tuple[tuple[str, str, str], ...] = (
    ("send -> send_ok", "sent", "acked"),
    ("produce -> marked published (broker ack, mark)", "produced", "marked"),
)


def stage_ms(trip: Trip, start: str, end: str) -> float | None:
    first: float | None = getattr(trip, start)
    last: float | None = getattr(trip, end)
    if first is None or last is None:
        return None
    return (last - first) * 1000


@dataclass(frozen=True)
class StageSummary:
    name: str
    #: Messages whose two moments are both known.
    samples: int
    latency: Latency | None


def summarize_stage(trips: Iterable[Trip], name: str, start: str, end: str) -> StageSummary:
    values = [v for t in trips if (v := stage_ms(t, start, end)) is not None]
    return StageSummary(name, len(values), summarize_latencies(values) if values else None)


@dataclass(frozen=True)
class LatencyResult:
    messages: int
    #: Sent and never delivered (within the wait) or never acknowledged.
    lost: int
    send_to_delivery: Latency | None
    stages: list[StageSummary]
    side_stages: list[StageSummary]
    target_p50_ms: float = TARGET_P50_MS
    target_p95_ms: float = TARGET_P95_MS

    @property
    def met(self) -> bool:
        total = self.send_to_delivery
        return (
            self.lost == 0
            and total is not None
            and total.p50_ms <= self.target_p50_ms
            and total.p95_ms <= self.target_p95_ms
        )


def summarize_trips(trips: Sequence[Trip]) -> LatencyResult:
    delivered = [t for t in trips if t.delivered is not None]
    totals = [v for t in delivered if (v := stage_ms(t, "sent", "delivered")) is not None]
    lost = sum(1 for t in trips if t.delivered is None or t.acked is None)
    return LatencyResult(
        messages=len(trips),
        lost=lost,
        send_to_delivery=summarize_latencies(totals) if totals else None,
        stages=[summarize_stage(delivered, *stage) for stage in STAGES],
        side_stages=[summarize_stage(trips, *stage) for stage in SIDE_STAGES],
    )


def with_moments(trip: Trip, **moments: float | None) -> Trip:
    """`trip` with the moments given (None leaves a moment as it was)."""
    known = {name: value for name, value in moments.items() if value is not None}
    return Trip(**{**vars(trip), **known})


def _cell(latency: Latency | None) -> str:
    if latency is None:
        return "-"
    return (
        f"{latency.p50_ms:7.2f} {latency.p95_ms:7.2f} {latency.p99_ms:7.2f} {latency.max_ms:8.2f}"
    )


def render(result: LatencyResult) -> str:
    """The table printed at the end of a run."""
    width = max(len(s.name) for s in [*result.stages, *result.side_stages])
    header = f"{'':<{width}} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>8}  n"
    total = result.send_to_delivery
    lines = [header, "-" * len(header)]
    lines.append(f"{'send -> delivery':<{width}} {_cell(total)}  {result.messages - result.lost}")
    lines.extend(f"  {s.name:<{width - 2}} {_cell(s.latency)}  {s.samples}" for s in result.stages)
    lines.extend(f"{s.name:<{width}} {_cell(s.latency)}  {s.samples}" for s in result.side_stages)
    verdict = "met" if result.met else "NOT met"
    lines.append(
        f"target p50 <= {result.target_p50_ms:g} ms, p95 <= {result.target_p95_ms:g} ms: "
        f"{verdict} ({result.messages} messages, {result.lost} lost). Stage percentiles are "
        "each stage's own (they do not add up); the produce moment has millisecond resolution."
    )
    return "\n".join(lines)
