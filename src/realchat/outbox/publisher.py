"""The outbox publisher: carries committed events from PostgreSQL to Kafka, crash-safe.

Guarantees:
- At least once: a row is marked published only after the broker acknowledged it (acks=all),
  inside the same transaction that leased its shard; a crash before the mark republishes it.
- Per-conversation order: one conversation maps to one shard, one publisher holds a shard at a
  time, events go out in commit order, and an event that failed holds back the later events of
  its conversation (they are re-sent after it) instead of being overtaken.
- Outages are retried forever with capped exponential backoff; only poison events (the broker
  can never accept them) are dead-lettered. A batch-level "too large" verdict is first re-tried one
  event at a time, so only the real culprit is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
import structlog
from confluent_kafka import KafkaError
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from prometheus_client import Counter, Gauge, Histogram

from realchat.backoff import Backoff
from realchat.bus.producer import AsyncProducer, Delivered, DeliveryError, producer_config
from realchat.config import FaultSettings, OutboxSettings, Settings
from realchat.events.models import EVENT_TYPE_HEADER
from realchat.observability.ops import start_ops_server
from realchat.observability.tracing import extract, inject, tracer
from realchat.outbox import store
from realchat.outbox.rows import OutboxEvent
from realchat.outbox.wakeup import WakeupListener
from realchat.storage.migrations import schema_is_current
from realchat.storage.pool import DATABASE_ERRORS, create_pool

log = structlog.get_logger(__name__)

PUBLISHED = Counter("realchat_outbox_published_total", "Outbox events acknowledged by Kafka")
DEAD_LETTERED = Counter("realchat_outbox_dead_lettered_total", "Poison events dead-lettered")
FAILURES = Counter(
    "realchat_outbox_publish_failures_total", "Events not acknowledged (retried)", ["reason"]
)
PENDING = Gauge("realchat_outbox_pending_count", "Outbox events waiting to be published")
OLDEST_AGE = Gauge(
    "realchat_outbox_oldest_pending_age_seconds", "Age of the oldest unpublished outbox event"
)
BATCH_SECONDS = Histogram(
    "realchat_kafka_publish_latency_seconds", "Produce-to-acknowledgement time of one batch"
)

#: Errors with which the broker (or librdkafka) refuses a record for what it is, not for when
#: it was sent: retrying can never succeed.
POISON_CODES = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)


#: On shutdown, after the batches finished or were abandoned, how long queued records may flush.
CLOSE_FLUSH_S = 2.0

#: Pause before looking at the outbox again after PostgreSQL failed the scan.
SCAN_RETRY_S = 0.5

#: The publisher hands the producer a whole batch at once and waits for it: lingering for more
#: records would only add latency to every event.
PUBLISHER_OVERRIDES: Mapping[str, str | int | float | bool] = {"linger.ms": 0}

ProducerFactory = Callable[[Mapping[str, str | int | float | bool]], AsyncProducer]

#: librdkafka settings of the producer that sends suspects one by one.
SOLO_OVERRIDES: Mapping[str, str | int | float | bool] = {
    "linger.ms": 0,
    "batch.num.messages": 1,
    "max.in.flight.requests.per.connection": 1,
}


def producer_factory(
    bootstrap_servers: str, delivery_timeout_s: float, client_id: str
) -> ProducerFactory:
    """Makes the publisher's producers: the durable configuration plus per-use overrides."""

    def new_producer(overrides: Mapping[str, str | int | float | bool]) -> AsyncProducer:
        config = producer_config(
            bootstrap_servers, delivery_timeout_s=delivery_timeout_s, client_id=client_id
        )
        return AsyncProducer({**config, **PUBLISHER_OVERRIDES, **overrides})

    return new_producer


@dataclass
class BatchOutcome:
    published: list[int] = field(default_factory=list)
    retry: dict[int, str] = field(default_factory=dict)
    poison: dict[int, str] = field(default_factory=dict)
    #: Events refused as poison while sent in a batch: to be re-sent one at a time.
    suspects: list[int] = field(default_factory=list)


def classify(
    events: Sequence[OutboxEvent],
    results: Sequence[Delivered | BaseException],
    *,
    isolated: bool,
) -> BatchOutcome:
    """Decide each event's fate from its delivery result, in commit order.

    Once an event of a conversation failed, the later events of that conversation in the batch
    are not marked even if they were acknowledged: they will be sent again after it.
    """
    outcome = BatchOutcome()
    blocked: set[str] = set()
    for event, result in zip(events, results, strict=True):
        if isinstance(result, Delivered):
            if event.partition_key in blocked:
                outcome.retry[event.id] = "held back behind an earlier failed event"
            else:
                outcome.published.append(event.id)
            continue
        blocked.add(event.partition_key)
        error = str(result)
        if isinstance(result, DeliveryError) and result.code in POISON_CODES:
            if isolated:
                outcome.poison[event.id] = error
                blocked.discard(event.partition_key)  # dead-lettered: no longer in the way
            else:
                outcome.suspects.append(event.id)
                outcome.retry[event.id] = error
        else:
            outcome.retry[event.id] = error
    return outcome


def _publish_span(event: OutboxEvent) -> Span:
    """A producer span continuing the trace that wrote the event (its context is in the row)."""
    return tracer().start_span(
        f"{event.topic} publish",
        context=extract(event.trace_context),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": event.topic,
            "realchat.outbox_id": event.id,
        },
    )


def _headers(event: OutboxEvent, span: Span) -> list[tuple[str, bytes]]:
    """The event type, and the publish span's trace context for the consumers to continue."""
    headers = [(EVENT_TYPE_HEADER, event.event_type.encode())]
    carrier = inject(trace.set_span_in_context(span))
    headers.extend((k, v.encode()) for k, v in sorted(carrier.items()))
    return headers


class NotSentError(Exception):
    """Held back before reaching the producer, behind an earlier event of its conversation."""


def _not_sent(event: OutboxEvent) -> asyncio.Future[Delivered]:
    future: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
    future.set_exception(NotSentError(f"held back behind an earlier refused event ({event.id})"))
    return future


def _end_spans(spans: Sequence[Span], results: Sequence[Delivered | BaseException]) -> None:
    for span, result in zip(spans, results, strict=True):
        if not isinstance(result, Delivered):
            span.set_status(Status(StatusCode.ERROR, str(result)))
        span.end()


class Producing(Protocol):
    def produce(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> asyncio.Future[Delivered]: ...


def produce_in_order(
    producer: Producing, events: Sequence[OutboxEvent], spans: Sequence[Span]
) -> list[asyncio.Future[Delivered]]:
    """Hand a batch to the producer. Once the producer refused an event on the spot (its queue
    full, the record too large), the later events of that conversation are not handed over:
    written without it, they would overtake it in the partition."""
    futures: list[asyncio.Future[Delivered]] = []
    refused: set[str] = set()
    for event, span in zip(events, spans, strict=True):
        if event.partition_key in refused:
            futures.append(_not_sent(event))
            continue
        future = producer.produce(
            event.topic, event.partition_key.encode(), event.payload, _headers(event, span)
        )
        if future.done() and future.exception() is not None:
            refused.add(event.partition_key)
        futures.append(future)
    return futures


def _no_hints() -> frozenset[int] | None:
    return None


def hinted_shards(
    hinted: frozenset[int] | None, since_scan_s: float, poll_interval_s: float
) -> list[int] | None:
    """The shards to look at without scanning the outbox: those a wake-up named, unless none
    were named or the last scan is a poll interval old (the scan stays the safety net for
    writers that name no shard, and for notifications lost). None: scan."""
    if not hinted or since_scan_s >= poll_interval_s:
        return None
    return sorted(hinted)


class OutboxPublisher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer_factory: ProducerFactory,
        settings: OutboxSettings,
        faults: FaultSettings | None = None,
        wakeups: asyncio.Event | None = None,
        hints: Callable[[], frozenset[int] | None] = _no_hints,
    ) -> None:
        """`wakeups` is set when a writer committed new events (look now instead of at the
        next poll); `hints` then tells which shards (`WakeupListener.take_hints`)."""
        self._pool = pool
        self._wakeups = wakeups or asyncio.Event()
        self._hints = hints
        self._producer_factory = producer_factory
        self._producer = producer_factory({})
        #: Sends suspects one record per request, one at a time: librdkafka batches records of
        #: one partition together (from any shard), and the broker refuses a batch as a whole.
        self._solo_producer: AsyncProducer | None = None
        self._solo_lock = asyncio.Lock()
        self._settings = settings
        self._faults = faults or FaultSettings()
        self._backoff: dict[int, Backoff] = {}
        #: shard -> highest suspect id: until past it, the shard publishes one event at a time.
        self._isolate_until: dict[int, int] = {}
        #: Events this replica got acknowledged and marked (the metric sums all replicas).
        self.published_count = 0

    def _shard_backoff(self, shard: int) -> Backoff:
        if shard not in self._backoff:
            self._backoff[shard] = Backoff(
                self._settings.backoff_initial_s, self._settings.backoff_max_s
            )
        return self._backoff[shard]

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set; then finish the batches in flight and return."""
        inflight: dict[int, asyncio.Task[None]] = {}
        housekeeping = asyncio.create_task(self._housekeeping(stop))
        last_scan = -math.inf
        try:
            while not stop.is_set():
                if self._producer.fatal_error is not None and not inflight:
                    await self._replace_producer()
                now = time.monotonic()
                # Whatever commits from here on is either seen by this look or wakes the next.
                self._wakeups.clear()
                shards = hinted_shards(
                    self._hints(), now - last_scan, self._settings.poll_interval_s
                )
                if shards is None:
                    try:
                        shards = await store.shards_with_pending(self._pool)
                    except DATABASE_ERRORS as exc:
                        # PostgreSQL restarting: the events wait in the outbox; look again soon.
                        log.warning("outbox scan failed", error=repr(exc))
                        await asyncio.sleep(SCAN_RETRY_S)
                        continue
                    last_scan = now
                for shard in shards:
                    if len(inflight) >= self._settings.concurrency:
                        break
                    if shard not in inflight and self._shard_backoff(shard).ready(now):
                        inflight[shard] = asyncio.create_task(self._drain_shard(shard, stop))
                await self._wait(inflight, stop)
        finally:
            await self._finish(inflight.values())
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            # Whatever is still queued belongs to abandoned batches: they go out again later.
            await self._producer.close(timeout_s=CLOSE_FLUSH_S)
            if self._solo_producer is not None:
                await self._solo_producer.close(timeout_s=CLOSE_FLUSH_S)

    async def _finish(self, batches: Collection[asyncio.Task[None]]) -> None:
        """Let batches in flight complete, for a bounded time: during a broker outage they
        would wait forever. One abandoned unmarked is rolled back and re-sent later."""
        if not batches:
            return
        _, unfinished = await asyncio.wait(batches, timeout=self._settings.stop_timeout_s)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*batches, return_exceptions=True)
        if unfinished:
            log.warning("batches abandoned unmarked on shutdown", batches=len(unfinished))

    async def _replace_producer(self) -> None:
        """librdkafka declared the idempotent producer unusable: start a fresh one. Events it
        failed are still pending and go out again through the new producer."""
        log.error(
            "kafka producer failed fatally; recreating", error=str(self._producer.fatal_error)
        )
        await self._producer.close(timeout_s=1)
        self._producer = self._producer_factory({})

    async def _wait(self, inflight: dict[int, asyncio.Task[None]], stop: asyncio.Event) -> None:
        """Sleep a poll interval, or less if a writer woke us, a shard finished or we were told
        to stop."""
        stopping = asyncio.create_task(stop.wait())
        woken = asyncio.create_task(self._wakeups.wait())
        await asyncio.wait(
            [stopping, woken, *inflight.values()],
            timeout=self._settings.poll_interval_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        stopping.cancel()
        woken.cancel()
        for shard, task in list(inflight.items()):
            if task.done():
                del inflight[shard]
                if (exc := task.exception()) is not None:
                    FAILURES.labels(reason="shard_error").inc()
                    delay = self._shard_backoff(shard).failed(time.monotonic())
                    log.warning("outbox shard failed", shard=shard, error=repr(exc), retry_in=delay)

    async def _drain_shard(self, shard: int, stop: asyncio.Event) -> None:
        """Publish batches of one shard while they come back full."""
        while not stop.is_set():
            full = await self.publish_batch(shard)
            if not full:
                return

    async def publish_batch(self, shard: int) -> bool:
        """Lease the shard, publish one batch, mark it; True if the batch was full."""
        isolated = shard in self._isolate_until
        limit = 1 if isolated else self._settings.batch_size
        async with self._pool.acquire() as conn, conn.transaction():
            if not await store.try_lease(conn, shard):
                return False  # another publisher replica holds this shard
            events = await store.pending_batch(conn, shard, limit)
            if not events:
                return False
            started = time.monotonic()
            spans = [_publish_span(e) for e in events]
            if isolated:
                results = [await self._send_alone(events[0], spans[0])]
            else:
                futures = produce_in_order(self._producer, events, spans)
                results = await asyncio.gather(*futures, return_exceptions=True)
            BATCH_SECONDS.observe(time.monotonic() - started)
            _end_spans(spans, results)
            if self._faults.kill_publisher_after_ack and any(
                isinstance(r, Delivered) for r in results
            ):
                log.warning("fault injection: SIGKILL after broker ack, before the mark")
                os.kill(os.getpid(), signal.SIGKILL)
            outcome = classify(events, results, isolated=isolated)
            await store.mark_published(conn, outcome.published)
            await store.record_failures(conn, outcome.retry)
            for event_id, error in outcome.poison.items():
                await store.dead_letter(conn, event_id, error)
        self._account(shard, events, outcome)
        return len(events) == limit and not outcome.retry

    async def _send_alone(self, event: OutboxEvent, span: Span) -> Delivered | BaseException:
        """Produce one record in a request of its own, so the broker's verdict is about it."""
        async with self._solo_lock:
            if self._solo_producer is None:
                self._solo_producer = self._producer_factory(SOLO_OVERRIDES)
            try:
                return await self._solo_producer.produce(
                    event.topic, event.partition_key.encode(), event.payload, _headers(event, span)
                )
            except DeliveryError as error:
                return error

    def _account(self, shard: int, events: Sequence[OutboxEvent], outcome: BatchOutcome) -> None:
        PUBLISHED.inc(len(outcome.published))
        self.published_count += len(outcome.published)
        if outcome.suspects:
            self._isolate_until[shard] = max(outcome.suspects)
            log.warning("broker refused a batch as too large; retrying one by one", shard=shard)
        elif shard in self._isolate_until and events[-1].id >= self._isolate_until[shard]:
            del self._isolate_until[shard]
        for event_id, error in outcome.poison.items():
            DEAD_LETTERED.inc()
            log.error("outbox event dead-lettered", outbox_id=event_id, shard=shard, error=error)
        retried = {k: v for k, v in outcome.retry.items() if k not in outcome.suspects}
        if retried:
            reason = next(iter(retried.values()))
            FAILURES.labels(reason="delivery").inc(len(retried))
            delay = self._shard_backoff(shard).failed(time.monotonic())
            log.warning(
                "outbox delivery failed; retrying",
                shard=shard, events=len(retried), error=reason, retry_in=round(delay, 3),
            )  # fmt: skip
        else:
            self._shard_backoff(shard).reset()

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """Export the backlog gauges; delete rows published longer ago than the retention."""
        last_cleanup = 0.0
        while not stop.is_set():
            try:
                count, age = await store.pending_stats(self._pool)
                PENDING.set(count)
                OLDEST_AGE.set(age)
                if time.monotonic() - last_cleanup > 30:
                    await store.delete_published_before(self._pool, self._settings.retention_s)
                    last_cleanup = time.monotonic()
            except DATABASE_ERRORS as exc:
                log.warning("outbox housekeeping failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=2.0)


async def serve_publisher(settings: Settings, stop: asyncio.Event) -> None:
    """The `realchat outbox-publisher` process: the publisher plus its ops endpoint."""
    pool = await create_pool(settings.database, "realchat-outbox-publisher")
    client_id = f"realchat-outbox-{os.getpid()}"

    factory = producer_factory(
        settings.kafka.bootstrap_servers, settings.outbox.delivery_timeout_s, client_id
    )
    listener = WakeupListener(pool)
    publisher = OutboxPublisher(
        pool, factory, settings.outbox, settings.faults, listener.woken, listener.take_hints
    )

    async def ready() -> bool:
        return await schema_is_current(pool)

    ops = await start_ops_server(settings.ops_host, settings.outbox.ops_port, ready)
    log.info("outbox publisher running", ops_port=settings.outbox.ops_port)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(listener.run(stop))
            tasks.create_task(publisher.run(stop))
    finally:
        log.info("outbox publisher stopped")
        await ops.cleanup()
        await pool.close()
