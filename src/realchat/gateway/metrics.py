"""Gateway metrics (one registry per process; served on the ops port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_CONNECTIONS = Gauge("realchat_gateway_active_connections", "Open WebSocket connections")
LIVE_PAUSED = Gauge(
    "realchat_gateway_live_delivery_paused",
    "1 while this gateway's consumer holds no partitions: no live delivery, sync still works",
)
QUEUE_DEPTH = Histogram(
    "realchat_gateway_send_queue_depth",
    "Frames waiting for a connection's socket, sampled for every connection each heartbeat",
    buckets=(0, 1, 4, 16, 64, 128, 192, 256, 1024),
)
SLOW_CONSUMERS = Counter(
    "realchat_gateway_slow_consumer_disconnects_total", "Clients cut off because their queue filled"
)
FRAMES_SENT = Counter(
    "realchat_gateway_frames_sent_total", "Frames written to clients (pings included)"
)
DUPLICATES_SUPPRESSED = Counter(
    "realchat_gateway_duplicates_suppressed_total", "Live events dropped as already delivered"
)
GAPS = Counter("realchat_gateway_gaps_total", "Live events ahead of a gap, filled by a backfill")
EVENTS_CONSUMED = Counter(
    "realchat_gateway_events_consumed_total", "Kafka events dispatched", ["topic"]
)
DELIVERY_LATENCY = Histogram(
    "realchat_gateway_delivery_latency_seconds",
    "From message commit (created_at) to its frame handed to the recipients' sockets (once per "
    "event, not per recipient)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
KAFKA_LAG = Gauge(
    "realchat_gateway_kafka_lag",
    "Records behind the end of each assigned partition",
    ["topic", "partition"],
)
DISCONNECTS = Counter(
    "realchat_gateway_disconnects_total",
    "WebSocket sessions ended, by reason (client_closed, slow_consumer, policy, too_big, "
    "going_away, idle_timeout, unauthorized, error)",
    ["reason"],
)
HTTP_REQUESTS = Counter(
    "realchat_gateway_http_requests_total",
    "REST requests by route template, method and status",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "realchat_gateway_http_request_duration_seconds", "REST request duration", ["route"]
)
SYNC_BACKFILL = Histogram(
    "realchat_gateway_sync_backfill_messages",
    "Messages sent by one sync or gap backfill",
    buckets=(0, 1, 10, 100, 500, 1000, 5000, 20000),
)
BACKFILL_RETRIES = Counter(
    "realchat_gateway_backfill_retries_total",
    "Gap backfill history reads retried because the chat service was unavailable",
)
BAD_FRAMES = Counter("realchat_gateway_bad_frames_total", "Client frames refused", ["code"])
PRESENCE_WRITE_FAILURES = Counter(
    "realchat_gateway_presence_write_failures_total", "Device key writes that failed (retried)"
)
PRESENCE_STALE = Counter(
    "realchat_gateway_presence_stale_total", "Presence events older than one already applied"
)
REGISTRY_USERS = Gauge(
    "realchat_gateway_registry_users", "Users with at least one connection in the shard registry"
)
PRESENCE_DEVICES = Gauge(
    "realchat_gateway_presence_devices", "Device keys this gateway keeps alive in Redis"
)
