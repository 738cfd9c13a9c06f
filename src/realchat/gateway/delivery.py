"""Kafka -> hub: every gateway instance consumes every partition (decision 11, broadcast).

Each process has a consumer group of its own (`group_id`: the instance id and a per-process
suffix) and filters events down to its local recipients; the cost per event with no local
recipient is a JSON decode and a few dict lookups, measured in docs/benchmarks.md, which is what
bounds the number of instances.

librdkafka runs in one thread of its own that polls, hands each batch to the event loop, waits
until the loop has queued it to every local recipient, and only then commits those offsets
(asynchronously; synchronously when partitions are revoked). A client that is slow never blocks
this: its full queue cuts it off instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import msgspec
import structlog
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from opentelemetry import trace as trace_context
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from realchat.bus.admin import delete_group
from realchat.bus.consumer import ConsumerConfig, ConsumerThread, commit, data_records, next_batch
from realchat.events.models import (
    EVENT_TYPE_HEADER,
    ConversationRenamed,
    Event,
    MembershipChanged,
    MessageAcknowledged,
    MessageChanged,
    MessageCreated,
    UnknownEventTypeError,
    decode,
)
from realchat.events.topics import TOPICS
from realchat.gateway import metrics
from realchat.gateway.hub import Hub
from realchat.gateway.membership import dispatch_membership
from realchat.observability.tracing import extract, tracer

log = structlog.get_logger(__name__)

BatchHandler = Callable[[Sequence[Message]], Coroutine[Any, Any, None]]


#: librdkafka's default.
FETCH_WAIT_MAX_MS = 500


def consumer_config(
    bootstrap_servers: str,
    group_id: str,
    *,
    queued_max_kbytes: int = 8 * 1024,
    fetch_max_bytes: int = 8 * 1024 * 1024,
) -> dict[str, str | int | bool]:
    """The gateway's consumer. Its memory is bounded on purpose: librdkafka's defaults let the
    prefetch queue grow to 64 MiB and one fetch to 50 MB per gateway."""
    return {
        "bootstrap.servers": bootstrap_servers,
        # No static membership (`group.instance.id`): a static member that rejoins is handed
        # the group's cached assignment without a rebalance, so a topic created since (an
        # upgrade adding one) was never assigned. `realchat chaos` found it: a gateway missed
        # every edit for minutes. A group per process (`group_id`) needs no static membership
        # to be assigned at once after a crash: no dead member to wait for.
        "group.id": group_id,
        "session.timeout.ms": 10_000,
        "enable.auto.commit": False,
        # A new instance starts at the end: its clients catch up through sync, not Kafka.
        "auto.offset.reset": "latest",
        "enable.partition.eof": False,
        # How long the broker holds a fetch that finds nothing new. A record appended meanwhile
        # completes the fetch at once (fetch.min.bytes is 1), so this adds no latency; what it
        # sets is how often an idle consumer asks again. At 10 ms each gateway sent ~100
        # empty fetches a second, most of its idle CPU.
        "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
        # TCP_NODELAY: see `bus.producer.producer_config`.
        "socket.nagle.disable": True,
        "queued.max.messages.kbytes": queued_max_kbytes,
        "fetch.max.bytes": fetch_max_bytes,
        "log_level": 4,
    }


def group_id(instance_id: str) -> str:
    """This process's consumer group: named after the instance, and new for every process.

    A process starts at the partitions' ends (`KafkaDelivery`), so an earlier process's group
    holds nothing it needs; a new one is assigned at once, where the old one would first wait
    out a crashed member's session. The gateway deletes it when it stops cleanly."""
    return f"realchat-gateway-{instance_id}-{secrets.token_hex(4)}"


#: Deliveries handed over between two yields to the event loop (~5 ms of work at ~2.5 us each):
#: fewer yields, more frames per write for a client that gets several events of one batch.
YIELD_EVERY = 2048


class EventDispatcher:
    """Decodes records and dispatches them to the hub (runs on the event loop)."""

    def __init__(self, hub: Hub, membership_changed: Callable[[str], None] | None = None) -> None:
        """`membership_changed` is told the conversation of every membership event (the
        typing relay's member cache)."""
        self._hub = hub
        self._membership_changed = membership_changed

    async def __call__(self, records: Sequence[Message]) -> None:
        handed = 0
        for record in records:
            topic = record.topic() or ""
            headers = _headers(record)
            value = record.value()
            raw_type = headers.get(EVENT_TYPE_HEADER)
            event_type = raw_type.decode() if raw_type is not None else topic
            if not isinstance(value, bytes):
                continue
            try:
                event = decode(event_type, value)
            except (msgspec.ValidationError, msgspec.DecodeError, UnknownEventTypeError) as exc:
                log.error("undecodable event skipped", topic=topic, error=str(exc))
                continue
            metrics.EVENTS_CONSUMED.labels(topic=topic).inc()
            # The publisher's span, from the headers: the deliveries below join its trace.
            parent = extract({k: v.decode(errors="replace") for k, v in headers.items()})
            with tracer().start_as_current_span(
                f"{topic} process",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
            ) as span:
                # Socket writes become spans only when tracing records: otherwise every
                # delivery would start a no-op span on the writer's hot path.
                trace = trace_context.set_span_in_context(span) if span.is_recording() else None
                offered = self._dispatch(event, trace)
            handed += offered
            if handed >= YIELD_EVERY:
                # Let the loop write and read between slices of a big batch. Not after every
                # event: frames for one client within a slice go out in one write.
                handed = 0
                await asyncio.sleep(0)

    def _dispatch(self, event: Event, trace: Context | None) -> int:
        if isinstance(event, MessageCreated):
            return self._hub.dispatch_message(event, trace)
        if isinstance(event, MessageAcknowledged):
            return self._hub.dispatch_receipt(event)
        if isinstance(event, MembershipChanged):
            if self._membership_changed is not None:
                self._membership_changed(str(event.conversation_id))
            return dispatch_membership(event, self._hub.connections_of)
        if isinstance(event, MessageChanged | ConversationRenamed):
            return self._hub.dispatch_change(event)
        offered = self._hub.dispatch_presence(event)
        if offered is None:
            metrics.PRESENCE_STALE.inc()
        return offered or 0


def _headers(record: Message) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for header in record.headers() or []:
        key, value = header[0], header[1]
        if isinstance(value, bytes):
            found[str(key)] = value
    return found


#: Records handed to the event loop at once, at most.
BATCH_SIZE = 500
#: How long one wait for a record lasts (the thread checks for a stop between waits).
POLL_TIMEOUT_S = 0.1


#: How often handled offsets are committed while records flow (and at stop and revoke). Not per
#: batch: at a low rate every event was its own batch, and its commit (a request to the group
#: coordinator and its answer, in librdkafka's threads) cost the gateway as much as the event's
#: fan-out to a few hundred sockets. A crash replays at most this much, which is harmless:
#: clients drop what they already have by seq.
COMMIT_INTERVAL_S = 1.0

#: Pause between attempts to look up the partitions' ends on the first assignment.
END_OFFSETS_RETRY_S = 1.0


class KafkaDelivery(ConsumerThread):
    """The consumer thread. `start()` on the loop; `stop()` commits what was handled and closes."""

    def __init__(
        self,
        config: ConsumerConfig,
        handle: BatchHandler,
        *,
        fresh_start_at_end: bool = False,
        topics: Sequence[str] = TOPICS,
    ) -> None:
        """`fresh_start_at_end`: the first assignment starts at the partitions' ends, not at the
        committed offsets (see `_on_assign`); only for a consumer with no one to deliver a
        backlog to (a gateway process, which refuses sessions until then)."""
        super().__init__(config, topics, name="kafka-delivery")
        self._handle = handle
        self._fresh_start_at_end = fresh_start_at_end
        self._assigned = threading.Event()
        #: Set once, when the first assignment's start positions are resolved (never cleared).
        self._positioned = threading.Event()
        #: Offsets handled (next to read) per partition, not yet committed.
        self._handled: dict[tuple[str, int], int] = {}
        self._next_lag_export = 0.0
        self._next_commit = 0.0

    @property
    def assigned(self) -> bool:
        return self._assigned.is_set()

    @property
    def positioned(self) -> bool:
        """Whether live delivery has a defined start: before that, a session's sync could miss
        events published between the sync's read and the consumer's start."""
        return self._positioned.is_set()

    async def wait_assigned(self, timeout_s: float) -> bool:
        return await asyncio.to_thread(self._assigned.wait, timeout_s)

    def _subscribe(self, consumer: Consumer) -> None:
        consumer.subscribe(
            self._topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _poll(self, consumer: Consumer) -> None:
        records = next_batch(consumer, BATCH_SIZE, POLL_TIMEOUT_S)
        good = data_records(records)
        if good:
            self._handle_on_loop(good)
        now = time.monotonic()
        if self._handled and now >= self._next_commit:
            self._next_commit = now + COMMIT_INTERVAL_S
            self._commit(consumer, asynchronous=True)
        if now >= self._next_lag_export:
            self._next_lag_export = now + 1.0
            self._export_lag(consumer)

    async def delete_group(self) -> bool:
        """Delete the consumer group, once stopped (`group_id`: no later process uses it; the
        group of a process that crashed expires with the brokers' `offsets.retention.minutes`)."""
        return await asyncio.to_thread(
            delete_group, str(self._config["bootstrap.servers"]), str(self._config["group.id"])
        )

    def _stopped(self, consumer: Consumer) -> None:
        self._commit(consumer, asynchronous=False)

    def _handle_on_loop(self, records: list[Message]) -> None:
        # Queued to every local recipient before the offsets move.
        self._on_loop(self._handle(records))
        for record in records:
            topic, partition, offset = record.topic(), record.partition(), record.offset()
            if topic is not None and partition is not None and offset is not None:
                self._handled[(topic, partition)] = offset + 1

    def _commit(self, consumer: Consumer, *, asynchronous: bool) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._handled.items()]
        self._handled = {}
        commit(consumer, offsets, asynchronous=asynchronous)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """With `fresh_start_at_end`, the process's first assignment starts every partition at
        its end as of now; other assignments (rebalances while it runs) at the committed offsets.

        A new process has no clients yet (sessions are refused until this is done), so the
        backlog since its last run concerns nobody: replaying it would only delay live events.
        Every client syncs from the database after it connects, and everything published after
        the ends looked up here is consumed. The ends are committed at once, so that a later
        rebalance (a bus outage) resumes from them on a partition that had no traffic since,
        not from the end as of then."""
        if self._fresh_start_at_end and not self._positioned.is_set():
            starts = self._ends(consumer, partitions)
            if starts is None:
                return  # stopping
            consumer.assign(starts)
            try:
                consumer.commit(offsets=starts, asynchronous=False)
            except KafkaException as exc:  # only costs a replay after a later rebalance
                log.warning("start offsets not committed", error=str(exc))
        else:
            self._assign_committed(consumer, partitions)
        self._positioned.set()
        log.info("partitions assigned", count=len(partitions))
        unassigned = set(self._topics) - {tp.topic for tp in partitions}
        if unassigned:  # a topic missing from the cluster: its events reach no one
            log.error("subscribed topics without partitions", topics=sorted(unassigned))
        self._assigned.set()

    def _ends(
        self, consumer: Consumer, partitions: list[TopicPartition]
    ) -> list[TopicPartition] | None:
        """Each partition at its end as of now, asked until the brokers answer (not ready
        meanwhile, rather than ready and unsafe); None if the consumer is stopping."""
        while not self._stopping.is_set():
            try:
                return [
                    TopicPartition(tp.topic, tp.partition, consumer.get_watermark_offsets(tp, 5)[1])
                    for tp in partitions
                ]
            except KafkaException as exc:
                log.warning("partition ends not known yet; asking again", error=str(exc))
                self._stopping.wait(END_OFFSETS_RETRY_S)
        return None

    def _assign_committed(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start each partition at its committed offset, else at its end as of now.

        Left to `auto.offset.reset`, "the end" is looked up only when fetching starts, after the
        gateway already said it was ready: events committed in between were never delivered."""
        try:
            starts = []
            for tp in consumer.committed(partitions, timeout=10):
                if tp.offset < 0:
                    _, end = consumer.get_watermark_offsets(tp, timeout=10)
                    tp = TopicPartition(tp.topic, tp.partition, end)
                starts.append(tp)
            consumer.assign(starts)
        except KafkaException as exc:
            log.warning("start offsets not pinned; starting at the latest", error=str(exc))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit what was handled before the partitions go to someone else."""
        self._commit(consumer, asynchronous=False)
        self._unassigned(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group dropped us (session timed out, e.g. the brokers were unreachable): nothing
        to commit, and not ready until partitions are assigned again."""
        log.warning("partitions lost", count=len(partitions))
        self._unassigned(partitions)

    def _unassigned(self, partitions: list[TopicPartition]) -> None:
        self._assigned.clear()
        for tp in partitions:
            with contextlib.suppress(KeyError):
                metrics.KAFKA_LAG.remove(tp.topic, str(tp.partition))

    def _export_lag(self, consumer: Consumer) -> None:
        try:
            for tp in consumer.assignment():
                position = consumer.position([tp])[0].offset
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if position >= 0 and high >= 0:
                    metrics.KAFKA_LAG.labels(tp.topic, str(tp.partition)).set(
                        max(0, high - position)
                    )
        except KafkaException:
            return
