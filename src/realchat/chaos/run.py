"""`realchat chaos`: a stack of 3 Kafka nodes, 2 gateways behind HAProxy, 2 outbox publishers and
presence, under steady traffic, through a schedule of faults; then the checker's verdict and a
report (JSON + a readable summary) per fault.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from realchat.chaos.checker import STALLED_SEND_S, Verdict, bus_facts, database_facts, judge
from realchat.chaos.faults import (
    FAULTS,
    SHORT_FAULTS,
    SHORT_SINGLE_BROKER_FAULTS,
    SINGLE_BROKER_FAULTS,
    Fault,
    random_schedule,
)
from realchat.chaos.history import (
    FaultMark,
    HistoryWriter,
    Received,
    Record,
    Refused,
    Sent,
    read_history,
)
from realchat.chaos.traffic import Traffic
from realchat.config import PresenceSettings, Settings
from realchat.stack.layout import block_settings, block_stack
from realchat.stack.supervisor import Stack

Reporter = Callable[[str], None]


@dataclass(frozen=True)
class Timings:
    warmup_s: float
    settle_s: float
    quiesce_timeout_s: float = 120.0


FULL = Timings(warmup_s=10, settle_s=20)
#: Refusals this long after a fault healed still count as its own (a gateway's restart, a
#: client's reconnect).
REFUSALS_AFTER_S = 5.0
SHORT = Timings(warmup_s=5, settle_s=6)


def chaos_settings(state_dir: Path, base: int = 21000, kafka_nodes: int = 3) -> Settings:
    """The chaos stack: its own dir and a port block below the ephemeral range (so it runs
    beside the dev and test stacks)."""
    stack = block_stack(state_dir, base, kafka_nodes=kafka_nodes, gateways=2, publishers=2)
    stack = stack.model_copy(update={"kafka_heap_mb": 384, "fault_links": True})
    return block_settings(
        stack, base, PresenceSettings(heartbeat_s=2.0, key_ttl_s=6, sweep_interval_s=3.0)
    )


async def run_chaos(
    settings: Settings,
    faults: Sequence[Fault],
    timings: Timings,
    output: Path,
    report: Reporter = print,
    schedule: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Run the schedule; write `<output>.json`, `<output>.txt` and the history next to them."""
    history_path = output.with_suffix(".history.jsonl")
    history_path.unlink(missing_ok=True)
    history = HistoryWriter(history_path)
    stack = Stack(settings, report=report)
    started = time.time()
    await stack.up()
    traffic = Traffic(f"http://127.0.0.1:{settings.http.port}", history)
    #: Processes that ended without being killed by a fault: each one fails the run.
    unexplained: dict[str, str] = {}
    try:
        await traffic.start()
        report(
            f"traffic: {len(traffic.devices)} devices, {len(traffic.conversations)} conversations"
        )
        await asyncio.sleep(timings.warmup_s)
        for fault in faults:
            report(f"fault {fault.name}: {fault.what}")
            injected = time.time()
            await fault.run(stack)
            history.write(FaultMark(fault.name, injected, time.time()))
            await asyncio.sleep(timings.settle_s)
            unexplained.update(_exits(stack, fault.name, report))
        await traffic.stop_sending()
        dsn = stack.postgres.dsn()
        quiet = await _quiesce(traffic, dsn, timings.quiesce_timeout_s)
        report("deliveries settled" if quiet else "deliveries did NOT settle in time")
        await traffic.close()
        history.close()
        records = read_history(history_path)
        db = await database_facts(dsn, traffic.conversations)
        bus = await asyncio.to_thread(
            bus_facts, stack.kafka.bootstrap_servers, traffic.conversations
        )
        verdict = judge(records, db, bus)
        unexplained.update(_exits(stack, "the end", report))
    except BaseException:
        await traffic.close()
        raise
    finally:
        await stack.down()
    result = _result(
        settings, faults, records, verdict, traffic, unexplained, schedule, time.time() - started
    )
    _write(output, result, report)
    return result


def _result(
    settings: Settings,
    faults: Sequence[Fault],
    records: list[Record],
    verdict: Verdict,
    traffic: Traffic,
    unexplained: dict[str, str],
    schedule: dict[str, int] | None,
    duration_s: float,
) -> dict[str, Any]:
    """The run's document: the stack, the traffic, each fault's figures and the verdict."""
    by_kind = _ByKind.of(records)
    what = {f.name: f.what for f in faults}
    return {
        "run_id": uuid.uuid4().hex[:8],
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(duration_s, 1),
        "stack": _described(settings),
        "schedule": schedule or {"rounds": 1},
        "traffic": {
            "devices": len(traffic.devices),
            "conversations": len(traffic.conversations),
            "sends_acknowledged": verdict.acknowledged,
            "sends_refused": traffic.send_failures,
            "sends_retried": traffic.send_retries,
            "edits_failed": traffic.edit_failures,
        },
        "faults": [_fault_figures(by_kind, mark, what) for mark in by_kind.marks],
        # A process that ended with no fault killing it fails the run like a lost message.
        "verdict": {
            **verdict.as_dict(),
            "unexplained_exits": unexplained,
            "ok": verdict.ok and not unexplained,
        },
    }


def _write(output: Path, result: dict[str, Any], report: Reporter) -> None:
    """`<output>.json` and the summary as `<output>.txt` (printed too)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    summary = _summary(result)
    output.with_suffix(".txt").write_text(summary)
    report(summary)


def _exits(stack: Stack, after: str, report: Reporter) -> dict[str, str]:
    """Components that ended on their own (not killed by a fault): reported, with how."""
    ended = stack.reap_ended()
    for name, how in ended.items():
        report(f"UNEXPLAINED EXIT after {after}: {name} {how}")
    return {f"{name} (after {after})": how for name, how in ended.items()}


async def _quiesce(traffic: Traffic, dsn: str, timeout_s: float) -> bool:
    """Until every device holds every message of its conversations (or the timeout)."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = await conn.fetch(
                "SELECT id::text AS id, last_seq FROM conversations WHERE id = ANY($1::uuid[])",
                traffic.conversations,
            )
            last = {r["id"]: r["last_seq"] for r in rows}
            members = await conn.fetch(
                "SELECT conversation_id::text AS c, user_id::text AS u FROM conversation_members "
                "WHERE conversation_id = ANY($1::uuid[])",
                traffic.conversations,
            )
            of_user: dict[str, list[str]] = {}
            for row in members:
                of_user.setdefault(row["u"], []).append(row["c"])
            behind = [
                d.name
                for d in traffic.devices
                for c in of_user.get(d.user_id, [])
                if d.client.positions().get(c, 0) < last[c]
            ]
            if not behind:
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await conn.close()


@dataclass(frozen=True)
class _ByKind:
    """The history split by record kind once, not once per fault (a seeded run has hundreds)."""

    marks: list[FaultMark]
    sent: list[Sent]
    received: list[Received]
    refused: list[Refused]

    @classmethod
    def of(cls, records: list[Record]) -> _ByKind:
        return cls(
            [r for r in records if isinstance(r, FaultMark)],
            [r for r in records if isinstance(r, Sent)],
            [r for r in records if isinstance(r, Received)],
            [r for r in records if isinstance(r, Refused)],
        )


def _fault_figures(history: _ByKind, mark: FaultMark, what: dict[str, str]) -> dict[str, Any]:
    """Recovery: from the injection until a message started after it reached a recipient; how
    long after the component or link was back the messages sent during the fault had all
    arrived; and the send attempts refused meanwhile (a retried refusal counts each time)."""
    sent, received = history.sent, history.received
    started_after = {(s.conversation_id, s.seq) for s in sent if s.started_at >= mark.at}
    first_delivery = min(
        (r.at for r in received if (r.conversation_id, r.seq) in started_after), default=None
    )
    in_flight = [s for s in sent if s.started_at < mark.at < s.at]
    during = [s for s in sent if mark.at <= s.started_at <= mark.restored_at]
    sent_during = {(s.conversation_id, s.seq) for s in during}
    last_arrival = max(
        (r.at for r in received if (r.conversation_id, r.seq) in sent_during), default=None
    )
    latencies = [s.at - s.started_at for s in sent if mark.at <= s.at <= mark.restored_at + 5]
    refused = [r for r in history.refused if mark.at <= r.at <= mark.restored_at + REFUSALS_AFTER_S]
    return {
        "fault": mark.name,
        "what": what.get(mark.name, mark.name),
        "restored_after_s": round(mark.restored_at - mark.at, 2),
        "recovered_after_s": None if first_delivery is None else round(first_delivery - mark.at, 2),
        "sends_in_flight_at_injection": len(in_flight),
        "sends_started_while_down": len(during),
        "delivered_after_restore_s": (
            None if last_arrival is None else round(max(0.0, last_arrival - mark.restored_at), 2)
        ),
        "send_attempts_refused": len(refused),
        "refusal_codes": sorted({r.code for r in refused}),
        "max_send_latency_s": round(max(latencies, default=0.0), 2),
    }


_SUMMED = ("sends_in_flight_at_injection", "send_attempts_refused")
_WORST = (
    "restored_after_s",
    "recovered_after_s",
    "delivered_after_restore_s",
    "max_send_latency_s",
)


def _worst_per_fault(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per fault kind, in first-applied order: how often, the worst times (None if a
    recovery never came), the summed counts."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in figures:
        groups.setdefault(f["fault"], []).append(f)
    rows = []
    for name, group in groups.items():
        row: dict[str, Any] = {"fault": name, "times": len(group)}
        row.update({key: sum(f[key] for f in group) for key in _SUMMED})
        for key in _WORST:
            seen = [f[key] for f in group]
            row[key] = None if None in seen else max(seen)
        rows.append(row)
    return rows


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _summary(result: dict[str, Any]) -> str:
    v = result["verdict"]
    lines = [
        f"chaos run {result['run_id']} ({result['duration_s']} s): {result['stack']}",
        f"traffic: {result['traffic']['devices']} devices, "
        f"{result['traffic']['sends_acknowledged']} acknowledged sends, "
        f"{v['messages']} messages, {v['deliveries_checked']} deliveries checked",
        "",
        f"{'fault':<34} {'times':>5} {'restored':>9} {'recovered':>10} {'caught up':>10} "
        f"{'in flight':>10} {'refused':>8} {'max send':>9}",
    ]
    for f in _worst_per_fault(result["faults"]):
        lines.append(
            f"{f['fault']:<34} {f['times']:>5} {f['restored_after_s']:>7.2f} s "
            f"{_seconds(f['recovered_after_s']):>10} "
            f"{_seconds(f['delivered_after_restore_s']):>10} "
            f"{f['sends_in_flight_at_injection']:>10} {f['send_attempts_refused']:>8} "
            f"{f['max_send_latency_s']:>7.2f} s"
        )
    lines += [
        "worst of each fault's applications (refused and in flight: their sum); restored: "
        "from the injection until the component was ready or the link healed; "
        "recovered: until a message sent after the injection reached a recipient; caught up: "
        "after the restore, until every message sent during the fault had arrived; refused: "
        f"send attempts refused from the injection until {REFUSALS_AFTER_S:g} s after the restore",
        "",
        f"lost acknowledged sends: {v['lost_acknowledged']}   "
        f"lost deliveries: {v['lost_deliveries']}",
        f"order violations: {v['order_violations']}   "
        f"application duplicates: {v['app_duplicates']}",
        f"duplicate seqs in PostgreSQL: {v['db_duplicate_seqs']}   gaps: {v['db_gaps']}   "
        f"unpublished events: {v['unpublished_events']}",
        f"wire duplicates (dropped by clients, allowed): {v['wire_duplicates']}   "
        f"duplicate records on Kafka: {v['bus_duplicate_records']}",
        f"edits acknowledged: {v['edits_acknowledged']}   lost: {v['lost_edits']}   "
        f"stale versions at the end: {v['stale_versions']}   "
        f"changes of a message never had: {v['edits_without_message']}",
        f"sends acknowledged more than {STALLED_SEND_S:g} s after their first attempt: "
        f"{v['stalled_sends']}   devices without a ready connection for longer: "
        f"{v['stalled_reconnects']}",
        "processes that ended without a fault killing them: "
        + (", ".join(f"{n}: {how}" for n, how in v["unexplained_exits"].items()) or "none"),
        f"verdict: {'PASS' if v['ok'] else 'FAIL'}",
    ]
    if v["examples"]:
        lines.append(f"examples: {json.dumps(v['examples'])}")
    return "\n".join(lines) + "\n"


def _described(settings: Settings) -> str:
    stack = settings.stack
    kafka = (
        "1 Kafka node (RF 1)"
        if stack.kafka_nodes == 1
        else f"{stack.kafka_nodes} Kafka nodes (RF 3, min ISR 2)"
    )
    return (
        f"{kafka}, {stack.gateways} gateways behind HAProxy, {stack.publishers} outbox "
        "publishers, presence, PostgreSQL, Redis"
        + (", links through a fault proxy" if stack.fault_links else "")
    )


def known_faults(short: bool, kafka_nodes: int) -> dict[str, Fault]:
    """The faults a stack of this shape can take (a one-node cluster has only its outage)."""
    if kafka_nodes == 1:
        return SHORT_SINGLE_BROKER_FAULTS if short else SINGLE_BROKER_FAULTS
    return SHORT_FAULTS if short else FAULTS


def chaos_command(
    settings: Settings,
    names: list[str] | None,
    short: bool,
    output: Path,
    report: Reporter,
    rounds: int = 1,
    seed: int = 1,
    kafka_nodes: int = 3,
) -> int:
    """Every fault (or `names`) once in order; with `rounds` > 1, each `rounds` times in an
    order drawn from `seed`, with the short hold times (so that 20 rounds fit in hours)."""
    known = known_faults(short or rounds > 1, kafka_nodes)
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        report(f"unknown faults for this stack: {', '.join(unknown)}; known: {', '.join(known)}")
        return 2
    faults = [known[n] for n in (names or list(known))]
    if rounds > 1:
        faults = random_schedule(faults, rounds, seed)
        report(f"schedule: {len(faults)} faults, each {rounds} times, seed {seed}")
    state_dir = Path(settings.stack.state_dir).parent / "chaos"
    timings = SHORT if short or rounds > 1 else FULL
    result = asyncio.run(
        run_chaos(
            chaos_settings(state_dir, kafka_nodes=kafka_nodes),
            faults,
            timings,
            output,
            report,
            schedule={"rounds": rounds, "seed": seed},
        )
    )
    return 0 if result["verdict"]["ok"] else 1
