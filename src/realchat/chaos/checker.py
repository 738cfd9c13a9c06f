"""The invariant checker: judges recorded client histories against PostgreSQL and Kafka.

Invariants (each counted, each expected 0 except the wire duplicates):
- every send acknowledged to a client is in PostgreSQL, as the same message (`lost_acknowledged`);
- every message reached every device of every member (`lost_deliveries`): devices reconnect and
  sync, so all of them count, also those a fault cut off;
- each device saw each conversation in order, seq after seq (`order_violations`), and no message
  twice at the application (`app_duplicates`);
- PostgreSQL has no seq twice and no gap in any conversation (`db_duplicate_seqs`, `db_gaps`);
- every message's event is on Kafka (`unpublished_events`), and nothing is left in the outbox;
- versions: every acknowledged edit is in PostgreSQL at its version or later (`lost_edits`);
  no device got a change of a message it was never handed (`edits_without_message`); every
  device ends with each message at the version PostgreSQL has (`stale_versions`), from the
  messages it was handed and the changes it got. (The SDK hands messages and changes over on
  two streams, so their order at the application says nothing of the order on the wire; that a
  change never overtakes its message on a connection is asserted frame by frame in
  tests/e2e/test_message_changes.py.)
- liveness: no acknowledged send took longer than `STALLED_SEND_S` from its first attempt
  (`stalled_sends`): the longest fault keeps sends waiting ~40 s; a client wedged until its
  token expired took 940 s, and nothing else noticed. And no device was without a ready
  connection for longer than that, from losing one to its next handshake's end
  (`stalled_reconnects`): a device that only reads shows a wedge no other way.
Redeliveries the clients dropped are counted (`wire_duplicates`): at-least-once allows them.

Facts are gathered with plain SQL and a raw Kafka consumer; the judgement is a pure function,
so its unit tests feed it histories with a lost message, a reordering and a duplicate.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg
from confluent_kafka import Consumer, KafkaError, TopicPartition

from realchat.chaos.history import (
    ClientSummary,
    Edited,
    Link,
    Received,
    Record,
    Sent,
    Updated,
)

MESSAGE_TOPIC = "chat.message.created.v1"
#: How many examples of each violation the verdict keeps (the counts are complete).
EXAMPLES = 5
#: A send acknowledged later than this after its first attempt was stuck, not slowed by a fault
#: (the longest ones hold sends ~40 s: the combined kill, a 30 s partition of the database).
STALLED_SEND_S = 90.0


@dataclass(frozen=True)
class DatabaseFacts:
    #: conversation -> (seq, message_id) of every stored message, in seq order.
    messages: dict[str, list[tuple[int, str]]]
    #: conversation -> member user ids.
    members: dict[str, set[str]]
    #: (conversation, seq) pairs stored more than once.
    duplicate_seqs: int
    #: Events still waiting in the outbox.
    unpublished_outbox: int
    #: (conversation, seq) -> the message's version now (1 if never changed).
    versions: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class BusFacts:
    #: conversation -> seqs whose event is on the topic.
    published: dict[str, set[int]]
    #: Records on the topic repeating a (conversation, seq) already seen there.
    duplicate_records: int


@dataclass
class Verdict:
    clients: int = 0
    messages: int = 0
    acknowledged: int = 0
    deliveries_checked: int = 0
    lost_acknowledged: int = 0
    lost_deliveries: int = 0
    order_violations: int = 0
    app_duplicates: int = 0
    db_duplicate_seqs: int = 0
    db_gaps: int = 0
    unpublished_events: int = 0
    wire_duplicates: int = 0
    bus_duplicate_records: int = 0
    #: Events the clients' SDKs dropped unread (a change among them leaves a stale version).
    events_dropped: int = 0
    edits_acknowledged: int = 0
    lost_edits: int = 0
    edits_without_message: int = 0
    stale_versions: int = 0
    stalled_sends: int = 0
    stalled_reconnects: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (
            self.lost_acknowledged
            or self.lost_deliveries
            or self.order_violations
            or self.app_duplicates
            or self.db_duplicate_seqs
            or self.db_gaps
            or self.unpublished_events
            or self.lost_edits
            or self.edits_without_message
            or self.stale_versions
            or self.stalled_sends
            or self.stalled_reconnects
        )

    def note(self, kind: str, example: str) -> None:
        found = self.examples.setdefault(kind, [])
        if len(found) < EXAMPLES:
            found.append(example)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def judge(records: Iterable[Record], db: DatabaseFacts, bus: BusFacts) -> Verdict:
    records = list(records)
    verdict = Verdict()
    users = {r.client: r.user_id for r in records if isinstance(r, ClientSummary)}
    verdict.clients = len(users)
    verdict.wire_duplicates = sum(
        r.wire_duplicates for r in records if isinstance(r, ClientSummary)
    )
    verdict.events_dropped = sum(r.events_dropped for r in records if isinstance(r, ClientSummary))
    verdict.messages = sum(len(m) for m in db.messages.values())
    verdict.db_duplicate_seqs = db.duplicate_seqs
    verdict.bus_duplicate_records = bus.duplicate_records
    stored = {
        (conversation, seq): message_id
        for conversation, rows in db.messages.items()
        for seq, message_id in rows
    }
    _judge_acknowledged(verdict, records, stored)
    _judge_reconnects(verdict, records)
    _judge_storage(verdict, db, bus)
    _judge_deliveries(verdict, records, users, db, stored)
    _judge_versions(verdict, records, db)
    return verdict


def _judge_reconnects(verdict: Verdict, records: list[Record]) -> None:
    """Every device that lost its connection had a ready one again in time. A stretch still
    open when the history ends is not judged (the run closes the clients)."""
    down_since: dict[str, float] = {}
    for record in records:
        if not isinstance(record, Link):
            continue
        if record.state == "lost":
            down_since.setdefault(record.client, record.at)
            continue
        since = down_since.pop(record.client, None)
        if since is not None and (took := record.at - since) > STALLED_SEND_S:
            verdict.stalled_reconnects += 1
            verdict.note("stalled_reconnects", f"{record.client}: {took:.0f} s")


def _judge_acknowledged(
    verdict: Verdict, records: list[Record], stored: dict[tuple[str, int], str]
) -> None:
    """Every send the server acknowledged is stored, as the message it acknowledged, and was
    acknowledged in time."""
    for record in records:
        if isinstance(record, Sent):
            verdict.acknowledged += 1
            if stored.get((record.conversation_id, record.seq)) != record.message_id:
                verdict.lost_acknowledged += 1
                verdict.note(
                    "lost_acknowledged", f"{record.client} {record.conversation_id}#{record.seq}"
                )
            if (took := record.at - record.started_at) > STALLED_SEND_S:
                verdict.stalled_sends += 1
                verdict.note("stalled_sends", f"{record.client_msg_id}: {took:.0f} s")


def _judge_storage(verdict: Verdict, db: DatabaseFacts, bus: BusFacts) -> None:
    """Each conversation's seqs are 1..N without a gap, and each one's event is on the bus."""
    for conversation, rows in db.messages.items():
        seqs = [seq for seq, _ in rows]
        if seqs != list(range(1, len(seqs) + 1)):
            verdict.db_gaps += 1
            verdict.note("db_gaps", f"{conversation}: {seqs[:10]}...")
        missing = set(seqs) - bus.published.get(conversation, set())
        verdict.unpublished_events += len(missing)
        for seq in sorted(missing)[:EXAMPLES]:
            verdict.note("unpublished_events", f"{conversation}#{seq}")
    verdict.unpublished_events = max(verdict.unpublished_events, db.unpublished_outbox)


def _judge_deliveries(
    verdict: Verdict,
    records: list[Record],
    users: dict[str, str],
    db: DatabaseFacts,
    stored: dict[tuple[str, int], str],
) -> None:
    """Each device got every message of its conversations, in order, the right ones, and
    nothing of a conversation it is not in."""
    received: dict[tuple[str, str], list[Received]] = defaultdict(list)
    for record in records:
        if isinstance(record, Received):
            received[(record.client, record.conversation_id)].append(record)
    for client, user_id in users.items():
        for conversation, members in db.members.items():
            stream = received.get((client, conversation), [])
            if user_id not in members:
                if stream:  # an outsider saw messages: that is worse than a loss
                    verdict.lost_deliveries += len(stream)
                    verdict.note("outsider", f"{client} saw {conversation}")
                continue
            _judge_stream(verdict, client, conversation, stream)
            expected = {seq for seq, _ in db.messages.get(conversation, [])}
            got = {r.seq for r in stream}
            verdict.deliveries_checked += len(expected)
            lost = expected - got
            verdict.lost_deliveries += len(lost)
            for seq in sorted(lost)[:EXAMPLES]:
                verdict.note("lost_deliveries", f"{client} {conversation}#{seq}")
            for r in stream:
                if stored.get((conversation, r.seq)) not in (None, r.message_id):
                    verdict.lost_deliveries += 1
                    verdict.note("wrong_message", f"{client} {conversation}#{r.seq}")


def _judge_versions(verdict: Verdict, records: list[Record], db: DatabaseFacts) -> None:
    """Edits acknowledged are stored; each device ends with the version PostgreSQL has, and got
    no change of a message it never had."""
    for record in records:
        if isinstance(record, Edited):
            verdict.edits_acknowledged += 1
            if db.versions.get((record.conversation_id, record.seq), 0) < record.version:
                verdict.lost_edits += 1
                verdict.note("lost_edits", f"{record.client} {record.conversation_id}#{record.seq}")
    handed: dict[tuple[str, str, int], int] = {}
    changed: dict[tuple[str, str, int], int] = {}
    for record in records:
        if isinstance(record, Received | Updated):
            found = handed if isinstance(record, Received) else changed
            key = (record.client, record.conversation_id, record.seq)
            found[key] = max(found.get(key, 0), record.version)
    for key in changed.keys() - handed.keys():
        verdict.edits_without_message += 1
        verdict.note("edits_without_message", f"{key[0]} {key[1]}#{key[2]}")
    for (client, conversation, seq), version in handed.items():
        held = max(version, changed.get((client, conversation, seq), 0))
        now = db.versions.get((conversation, seq), 1)
        if held != now:
            verdict.stale_versions += 1
            verdict.note("stale_versions", f"{client} {conversation}#{seq}: v{held}, stored v{now}")


def _judge_stream(verdict: Verdict, client: str, conversation: str, stream: list[Received]) -> None:
    """Arrival order at the application: 1, 2, 3, ... with nothing repeated or skipped."""
    seen: set[int] = set()
    previous = 0
    for record in stream:
        if record.seq in seen:
            verdict.app_duplicates += 1
            verdict.note("app_duplicates", f"{client} {conversation}#{record.seq}")
            continue
        if record.seq != previous + 1:
            verdict.order_violations += 1
            verdict.note(
                "order_violations", f"{client} {conversation}: #{record.seq} after #{previous}"
            )
        seen.add(record.seq)
        previous = max(previous, record.seq)


# -- gathering the facts -------------------------------------------------------------------------


async def database_facts(dsn: str, conversations: list[str]) -> DatabaseFacts:
    ids = [uuid.UUID(c) for c in conversations]
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT conversation_id, seq, id, version FROM messages "
            "WHERE conversation_id = ANY($1) ORDER BY conversation_id, seq",
            ids,
        )
        members = await conn.fetch(
            "SELECT conversation_id, user_id FROM conversation_members "
            "WHERE conversation_id = ANY($1)",
            ids,
        )
        duplicates = await conn.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM messages WHERE conversation_id = ANY($1) "
            "GROUP BY conversation_id, seq HAVING count(*) > 1) d",
            ids,
        )
        unpublished = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND topic = $1", MESSAGE_TOPIC
        )
    finally:
        await conn.close()
    messages: dict[str, list[tuple[int, str]]] = {c: [] for c in conversations}
    for row in rows:
        messages[str(row["conversation_id"])].append((row["seq"], str(row["id"])))
    by_conversation: dict[str, set[str]] = defaultdict(set)
    for row in members:
        by_conversation[str(row["conversation_id"])].add(str(row["user_id"]))
    versions = {(str(r["conversation_id"]), r["seq"]): r["version"] for r in rows}
    return DatabaseFacts(
        messages, dict(by_conversation), int(duplicates), int(unpublished), versions
    )


def bus_facts(bootstrap_servers: str, conversations: list[str], timeout_s: float = 60) -> BusFacts:
    """Read the whole message topic (from the beginning to the current end) with a raw
    consumer; decode only the two fields the checker needs."""
    wanted = set(conversations)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"chaos-checker-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        partitions = (
            consumer.list_topics(MESSAGE_TOPIC, timeout=10).topics[MESSAGE_TOPIC].partitions
        )
        ends: dict[int, int] = {}
        assignment = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(MESSAGE_TOPIC, p), timeout=10)
            if high > low:
                ends[p] = high
                assignment.append(TopicPartition(MESSAGE_TOPIC, p, low))
        consumer.assign(assignment)
        published: dict[str, set[int]] = defaultdict(set)
        duplicates = 0
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends) and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(str(error))
                partition, offset = msg.partition(), msg.offset()
                if partition is not None and offset is not None and offset + 1 >= ends[partition]:
                    done.add(partition)
                value = msg.value()
                if value is None:
                    continue
                event = json.loads(value)
                conversation, seq = str(event["conversation_id"]), int(event["seq"])
                if conversation not in wanted:
                    continue
                if seq in published[conversation]:
                    duplicates += 1
                published[conversation].add(seq)
        if len(done) < len(ends):
            raise RuntimeError("the message topic could not be read to its end in time")
        return BusFacts(dict(published), duplicates)
    finally:
        consumer.close()
