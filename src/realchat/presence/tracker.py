"""Turns device keys into announced transitions: the first device online, the last one gone.

Two ways in, because Redis notifications are fire-and-forget:
- keyspace notifications (`set`, `del`, `expired` of `user:*` keys) for speed: a user is
  reconciled within milliseconds of a connect, a clean close or an expiry;
- a periodic sweep that compares every device key in Redis with the announced state, for what
  the notifications missed (this replica was down, its subscription dropped, Redis restarted).

Whatever the way in, `reconcile` decides under the user's row lock in PostgreSQL (see
`store.py`), so replicas never announce one transition twice.

Redis losing its data (restart without persistence) would make every connected user look
offline until their gateway refreshes. When the epoch key is missing the tracker records a new
epoch and announces no offline until one heartbeat (plus margin) after it: online users simply
stay online, and users who really left during the outage go offline when the grace ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable

import structlog
from prometheus_client import Counter, Gauge, Histogram
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from realchat.config import PresenceSettings
from realchat.events.models import PresenceStatus
from realchat.presence.registry import PresenceRegistry, parse_device_key
from realchat.presence.store import PresenceStore

log = structlog.get_logger(__name__)

TRANSITIONS = Counter(
    "realchat_presence_transitions_total", "Presence transitions announced", ["status"]
)
RECONCILE_FAILURES = Counter(
    "realchat_presence_reconcile_failures_total", "User reconciliations that failed (retried)"
)
SWEEPS = Histogram("realchat_presence_sweep_seconds", "Duration of a full presence sweep")
ONLINE = Gauge("realchat_presence_online_users", "Users announced online (as of the last sweep)")
NOTIFICATIONS = Counter(
    "realchat_presence_notifications_total", "Keyspace notifications received", ["event"]
)

#: Keyspace notification flags the tracker needs: keyevent channels (E) for generic commands
#: (g: del), string commands ($: set) and expiries (x).
NEEDED_NOTIFY_FLAGS = "Eg$x"
EVENTS = ("set", "del", "expired")
CHANNELS = tuple(f"__keyevent@{{db}}__:{event}" for event in EVENTS)
#: Pause before re-subscribing after Redis went away.
RESUBSCRIBE_PAUSE_S = 0.5


def merged_notify_flags(current: str, needed: str = NEEDED_NOTIFY_FLAGS) -> str:
    """The notify-keyspace-events value that keeps what is configured and adds what we need."""
    have = set(current)
    if "A" in have:  # "A" is g$lshzxet, all the event classes
        have |= set("g$lshzxet")
    return current + "".join(flag for flag in needed if flag not in have)


class PresenceTracker:
    def __init__(
        self,
        registry: PresenceRegistry,
        store: PresenceStore,
        pubsub: PubSub,
        settings: PresenceSettings,
        database: int = 0,
    ) -> None:
        self._registry = registry
        self._store = store
        self._pubsub = pubsub
        self._settings = settings
        self._channels = [c.format(db=database) for c in CHANNELS]
        #: After Redis lost its data: no offline before every gateway refreshed once.
        self._grace_s = settings.heartbeat_s * 1.5
        self._queue: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        self._pending: set[uuid.UUID] = set()
        #: Users this replica last saw announced online: their heartbeats need no reconcile.
        self._known_online: set[uuid.UUID] = set()
        self._sweep_now = asyncio.Event()
        self.subscribed = False

    # -- ways in -------------------------------------------------------------------------------

    def request(self, user_ids: Iterable[uuid.UUID]) -> None:
        """Reconcile these users soon (once each, however often they are asked for)."""
        for user_id in user_ids:
            if user_id not in self._pending:
                self._pending.add(user_id)
                self._queue.put_nowait(user_id)

    def on_notification(self, event: str, key: str) -> None:
        parsed = parse_device_key(key)
        if parsed is None:
            return
        NOTIFICATIONS.labels(event=event).inc()
        user_id = parsed[0]
        if event == "set" and user_id in self._known_online:
            return  # a heartbeat of a user already online
        self.request([user_id])

    async def sweep(self) -> None:
        """Reconcile every user whose device keys disagree with the announced state."""
        started = time.monotonic()
        live = {user_id async for user_id, _ in self._registry.scan_devices()}
        announced = await self._store.online_users()
        self._known_online = set(announced)
        ONLINE.set(len(announced))
        self.request((live - announced) | (announced - live))
        SWEEPS.observe(time.monotonic() - started)

    # -- deciding ------------------------------------------------------------------------------

    async def reconcile(self, user_id: uuid.UUID) -> None:
        reconciled = await self._store.reconcile(user_id, lambda: self._observe(user_id))
        if reconciled.status == "online":
            self._known_online.add(user_id)
        else:
            self._known_online.discard(user_id)
        if reconciled.transition is not None:
            TRANSITIONS.labels(status=reconciled.transition.status).inc()
            log.info(
                "presence changed",
                user_id=str(user_id),
                status=reconciled.transition.status,
                version=reconciled.transition.version,
            )

    async def _observe(self, user_id: uuid.UUID) -> PresenceStatus | None:
        seen = await self._registry.observe(user_id)
        if seen.devices:
            return "online"
        if seen.epoch is None:
            epoch = await self._registry.mark_epoch()
            log.warning("redis lost its data; offline held back", grace_s=self._grace_s)
            self._sweep_after(epoch + self._grace_s - seen.now)
            return None
        if seen.now < seen.epoch + self._grace_s:
            self._sweep_after(seen.epoch + self._grace_s - seen.now)
            return None
        return "offline"

    def _sweep_after(self, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(max(0.0, delay_s) + 0.1, self._sweep_now.set)

    # -- loops ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [
            asyncio.create_task(self._listen(), name="presence-listen"),
            asyncio.create_task(self._sweep_forever(), name="presence-sweep"),
            *(
                asyncio.create_task(self._work(), name=f"presence-worker-{n}")
                for n in range(self._settings.workers)
            ),
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _work(self) -> None:
        while True:
            user_id = await self._queue.get()
            self._pending.discard(user_id)
            try:
                await self.reconcile(user_id)
            except Exception as exc:  # Redis or PostgreSQL away: the next sweep retries
                RECONCILE_FAILURES.inc()
                log.warning("presence reconcile failed", user_id=str(user_id), error=str(exc))

    async def _sweep_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._sweep_now.wait(), timeout=self._settings.sweep_interval_s
                )
            self._sweep_now.clear()
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("presence sweep failed", error=str(exc))
                await asyncio.sleep(RESUBSCRIBE_PAUSE_S)

    async def _listen(self) -> None:
        """Follow the notifications; every (re)subscription is followed by a sweep, because
        whatever happened while unsubscribed was not notified."""
        while True:
            try:
                await self._subscribe()
                while True:
                    message = await self._pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message.get("type") == "subscribe":
                        # Also sent when redis-py re-subscribes by itself after a reconnect:
                        # the Redis may be a restarted one, with its configured defaults and
                        # without the epoch (recording it now starts the grace at once).
                        await self._ensure_notifications()
                        await self._registry.mark_epoch()
                        self.subscribed = True
                        self._sweep_now.set()
                    self._handle(message)
            except (RedisError, OSError) as exc:
                self.subscribed = False
                log.warning("presence notifications lost; resubscribing", error=str(exc))
                await asyncio.sleep(RESUBSCRIBE_PAUSE_S)

    async def _subscribe(self) -> None:
        await self._ensure_notifications()
        await self._pubsub.subscribe(*self._channels)

    async def _ensure_notifications(self) -> None:
        client = self._registry.client
        current = (await client.config_get("notify-keyspace-events")).get(
            "notify-keyspace-events", ""
        )
        wanted = merged_notify_flags(_text(current))
        if wanted != _text(current):
            await client.config_set("notify-keyspace-events", wanted)

    def _handle(self, message: dict[str, object]) -> None:
        if message.get("type") != "message":
            return
        channel = _text(message.get("channel", b""))
        key = _text(message.get("data", b""))
        self.on_notification(channel.rsplit(":", 1)[-1], key)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
