"""Typed settings for every RealChat process.

Values come from `REALCHAT_*` environment variables (nested sections use `__`, e.g.
`REALCHAT_KAFKA__BOOTSTRAP_SERVERS`), then from the defaults below. Nothing is read at import time:
call `load_settings()` once at start-up and pass the result down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseModel):
    """PostgreSQL, the system of record."""

    #: DSN of the RealChat database. Unset means "the local stack's", which the stack supervisor
    #: passes to the processes it starts.
    url: SecretStr | None = None
    pool_min_size: int = Field(default=2, ge=1)
    pool_max_size: int = Field(default=20, ge=1)


class RedisSettings(BaseModel):
    """Redis, for presence."""

    url: str = "redis://127.0.0.1:16379/0"


class KafkaSettings(BaseModel):
    """The event bus."""

    bootstrap_servers: str = "127.0.0.1:19092"
    #: Partitions of every RealChat topic. Fixed at topic creation: changing it remaps
    #: conversations to partitions (see docs/operations.md before touching it).
    partitions: int = Field(default=12, ge=1)
    #: Replication factor of RealChat topics; the stack sets it to min(3, brokers).
    replication_factor: int = Field(default=1, ge=1)
    #: Minimum in-sync replicas for `acks=all` writes (only meaningful with replication >= 2).
    min_insync_replicas: int = Field(default=1, ge=1)


class ChatSettings(BaseModel):
    """The chat service (gRPC write engine and history)."""

    grpc_host: str = "127.0.0.1"
    grpc_port: int = 17070
    #: Where the chat process serves /metrics, /healthz and /readyz (on `Settings.ops_host`).
    ops_port: int = 17071
    #: Shared secret of trusted internal callers (the gateway), sent as
    #: `authorization: Bearer <token>` with `x-realchat-user-id`. The local stack generates it.
    internal_token: SecretStr | None = None
    #: Outbox shards: one partition key (a conversation, a user) always maps to one shard, each
    #: shard has one active publisher. Change it only with an empty outbox (docs/operations.md).
    #: Every outbox writer reads it (chat and presence, `realchat.outbox.writer`); it stays in
    #: this section because deployments set it as `REALCHAT_CHAT__OUTBOX_SHARDS`.
    outbox_shards: int = Field(default=16, ge=1, le=1024)
    max_members: int = Field(default=1000, ge=2)
    #: Group commit (chat/group_commit.py): most sends per batch (one statement, one commit).
    group_commit_max_batch: int = Field(default=256, ge=1, le=10_000)
    #: Longest a send waits for company while a batch is in flight; an idle service never waits.
    group_commit_linger_s: float = Field(default=0.002, ge=0, le=1)
    #: Batches in flight at once (each holds one pooled connection while it runs).
    group_commit_max_inflight: int = Field(default=4, ge=1)


class OutboxSettings(BaseModel):
    """The outbox publisher (`realchat outbox-publisher`)."""

    ops_port: int = 17072
    batch_size: int = Field(default=500, ge=1)
    #: How often an idle publisher looks for new events.
    poll_interval_s: float = Field(default=0.02, gt=0)
    #: Shards one replica publishes concurrently.
    concurrency: int = Field(default=4, ge=1)
    #: librdkafka's delivery timeout; 0 (the default) retries forever. A timeout can reorder:
    #: an event that timed out in flight may be missing while later ones of its partition land.
    delivery_timeout_s: float = Field(default=0.0, ge=0)
    #: On shutdown, how long batches still waiting for the broker may finish; after that they
    #: are abandoned unmarked (their events go out again later).
    stop_timeout_s: float = Field(default=10.0, gt=0)
    backoff_initial_s: float = Field(default=0.1, gt=0)
    backoff_max_s: float = Field(default=10.0, gt=0)
    #: Published rows are kept this long (for inspection), then deleted.
    retention_s: float = Field(default=600.0, ge=0)


#: The longest an access token may be configured to live: a stolen token is good for at most
#: this long even if its revocation were lost, and revocation records are kept this long.
MAX_TOKEN_TTL_S = 24 * 3600


class AuthSettings(BaseModel):
    """The auth service: accounts and asymmetric (EdDSA) JWT access tokens."""

    http_host: str = "127.0.0.1"
    http_port: int = 17080
    #: Where other processes reach the auth service's HTTP API.
    url: str = "http://127.0.0.1:17080"
    ops_port: int = 17081
    #: PEM Ed25519 private key: only the auth service reads it. The local stack generates one.
    private_key_file: Path | None = None
    #: PEM public key: the gateway and the chat service verify tokens locally with it.
    public_key_file: Path | None = None
    #: The `kid` of the signing key (published in the JWKS).
    key_id: str = "realchat-1"
    issuer: str = "realchat"
    audience: str = "realchat"
    token_ttl_s: int = Field(default=3600, ge=60, le=MAX_TOKEN_TTL_S)
    #: Login attempts allowed within the window (auth/limits.py): per username from one client
    #: address, per client address over all usernames, and per username from addresses that
    #: never logged in to it (those that did are exempt, so no one can lock an owner out).
    login_attempts: int = Field(default=10, ge=1)
    login_address_attempts: int = Field(default=30, ge=1)
    login_username_attempts: int = Field(default=50, ge=1)
    login_window_s: int = Field(default=60, ge=1)
    #: How long an address that logged in to an account stays exempt from its username budget.
    known_address_ttl_s: int = Field(default=30 * 86400, ge=60)
    #: Accounts created per client address within the window.
    signups_per_address: int = Field(default=10, ge=1)
    signup_window_s: int = Field(default=3600, ge=1)
    #: Client addresses with no per-address login or sign-up budgets (addresses or networks):
    #: every tool of a local stack (load test, chaos traffic, the test suite) shares 127.0.0.1.
    #: Behind the balancer a client's address is never loopback; set [] where one can be.
    unlimited_addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])
    #: Password hashes queued or running before a login gets 503 (sign-ups: half of it).
    hashing_queue: int = Field(default=64, ge=2)
    #: Peers (addresses or CIDR networks) whose `X-Forwarded-For` the auth service believes:
    #: the gateways and the balancer in front of them, so limits count the client's address.
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])


class GatewaySettings(BaseModel):
    """The WebSocket/REST edge (`realchat gateway`)."""

    #: Names this instance: each of its processes has a Kafka consumer group of its own,
    #: `realchat-gateway-<instance_id>-<random suffix>` (`gateway.delivery.group_id`).
    instance_id: str = "1"
    #: Peers (addresses or CIDR networks) whose `X-Forwarded-For` the gateway passes on to the
    #: auth service: the balancer in front of it. From any other peer only its address goes on.
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])
    ops_port: int = 17091
    shards: int = Field(default=64, ge=1)
    #: Frames waiting per connection whose socket is congested; past it the client is cut off
    #: (close 4008).
    send_queue_size: int = Field(default=256, ge=1)
    #: The same bound in bytes.
    send_queue_bytes: int = Field(default=2 * 1024 * 1024, ge=64 * 1024)
    #: Live messages reach a new connection once its first `sync` is handled (so they never
    #: overtake its backfill), or this long after the first one if the client sends no sync.
    sync_grace_s: float = Field(default=1.0, gt=0)
    #: How long a cut-off client gets to take its close frame before the TCP connection drops.
    close_grace_s: float = Field(default=2.0, gt=0)
    #: The gateway pings every connection this often (a WebSocket ping control frame).
    heartbeat_s: float = Field(default=20.0, gt=0)
    #: A connection from which nothing (no frame, no pong, no ping) arrived this long is closed
    #: with 4002; longer than the heartbeat, so a live client's pongs keep it open.
    idle_timeout_s: float = Field(default=60.0, gt=0)
    max_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Connections the kernel completes before the gateway accepts them (`listen` backlog;
    #: the kernel caps it at net.core.somaxconn): a burst of reconnects is not dropped.
    accept_backlog: int = Field(default=4096, ge=128)
    #: Frames a client may send per second (burst of the same size); beyond: error, then 1008.
    max_frames_per_s: float = Field(default=50.0, gt=0)
    #: WebSockets one user may hold open on one gateway instance; past it the upgrade is closed
    #: with 1008.
    max_connections_per_user: int = Field(default=32, ge=1)
    #: WebSockets one client address may hold open on one gateway instance (429 past it).
    max_connections_per_address: int = Field(default=1024, ge=1)
    #: Addresses or networks not counted per address (loopback: a local stack's tools).
    unlimited_addresses: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1"])
    #: Messages one user may send per second, across devices and gateway instances.
    sends_per_s: int = Field(default=20, ge=1)
    #: GetHistory page size for sync backfills.
    sync_page_size: int = Field(default=500, ge=1, le=500)
    #: Sync and gap backfills holding a history page (reading it or queueing it) at once, per
    #: gateway: a reconnect storm waits for a slot instead of holding a page per connection.
    max_concurrent_backfills: int = Field(default=32, ge=1)
    #: The same, per user: one user's connections cannot hold every slot of a gateway.
    max_concurrent_backfills_per_user: int = Field(default=4, ge=1)
    #: A backfill that finds no room in its client's queue for this long cuts the client off
    #: (4008): a client that does not read its sync must not keep a slot.
    backfill_stall_s: float = Field(default=30.0, gt=0)
    #: Kafka consumer memory: prefetched records kept at most (librdkafka
    #: `queued.max.messages.kbytes`, KiB) and bytes per fetch (`fetch.max.bytes`).
    kafka_queued_max_kbytes: int = Field(default=8 * 1024, ge=1024)
    kafka_fetch_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024 * 1024)
    #: SIGTERM to exit at most this long: clients get half of it to take their 1001 close, the
    #: Kafka consumer commits and leaves in what is left; whatever still runs then is cut.
    drain_timeout_s: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _idle_longer_than_heartbeat(self) -> GatewaySettings:
        if self.idle_timeout_s <= self.heartbeat_s:
            raise ValueError("gateway.idle_timeout_s must be longer than gateway.heartbeat_s")
        return self


class PresenceSettings(BaseModel):
    """Presence: device keys in Redis that gateways keep alive, and the presence service
    (`realchat presence`) that turns them into online/offline events."""

    ops_port: int = 17073
    #: Lifetime of a device key `user:{id}:{device}`: how long a device whose gateway died
    #: still counts as online.
    key_ttl_s: int = Field(default=60, ge=1)
    #: How often a gateway refreshes the keys of its connections (well inside the TTL).
    heartbeat_s: float = Field(default=20.0, gt=0)
    #: How often the presence service reconciles Redis with the recorded state: it finds the
    #: transitions whose notifications were lost (the service was down, Redis restarted).
    sweep_interval_s: float = Field(default=15.0, gt=0)
    #: Users reconciled concurrently by one presence replica.
    workers: int = Field(default=8, ge=1)

    @model_validator(mode="after")
    def _heartbeat_inside_ttl(self) -> PresenceSettings:
        if self.heartbeat_s >= self.key_ttl_s:
            raise ValueError("presence.heartbeat_s must be shorter than presence.key_ttl_s")
        return self


class NotifierSettings(BaseModel):
    """Push notifications for offline devices (`realchat notifier`, docs/notifications.md)."""

    #: The operator's push gateway. Unset: no notifier runs (the local stack starts none).
    webhook_url: str | None = None
    #: Signs each webhook body (`X-RealChat-Signature: sha256=<HMAC>`) when set.
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    ops_port: int = 17074
    #: A notification falls due this long after its first message unless the user read it.
    delay_s: float = Field(default=5.0, ge=0)
    #: At most one notification per user and conversation within this interval.
    collapse_s: float = Field(default=60.0, ge=0)
    #: Webhook attempts before a notification is dead-lettered, and the backoff between them.
    max_attempts: int = Field(default=10, ge=1)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    #: Due notifications one replica claims per transaction, and webhook calls in flight.
    batch_size: int = Field(default=100, ge=1)
    concurrency: int = Field(default=16, ge=1)
    #: How often an idle scheduler looks for due notifications.
    poll_interval_s: float = Field(default=0.25, gt=0)
    #: Messages older than this when the notifier reads them notify no one (a new consumer
    #: group starts at the oldest retained event; after a long outage, old news is no news).
    max_message_age_s: float = Field(default=3600.0, gt=0)
    #: Push tokens one user may register.
    max_devices_per_user: int = Field(default=20, ge=1)


class FaultSettings(BaseModel):
    """Failure injection for the crash tests; all off in normal operation."""

    #: SIGKILL the publisher after the broker acknowledged a batch, before marking it published.
    kill_publisher_after_ack: bool = False


class StackSettings(BaseModel):
    """The local stack that `realchat stack` runs: where its data lives and which ports it binds."""

    #: Data, logs and state of this stack. Two stacks with different dirs and ports can run at once.
    state_dir: Path = Path("var/dev")
    #: Where `make` put the Apache Kafka broker jars.
    kafka_libs_dir: Path = Path(".cache/kafka/libs")
    host: str = "127.0.0.1"
    postgres_port: int = 15432
    redis_port: int = 16379
    #: Client port of Kafka node 1; node n listens on kafka_port + 10*(n-1), its controller on +1.
    kafka_port: int = 19092
    kafka_nodes: int = Field(default=1, ge=1, le=5)
    kafka_heap_mb: int = Field(default=512, ge=128)
    database_name: str = "realchat"
    #: Gateway instances. One listens on the public entrypoint itself; several listen on
    #: `gateway_port + n` behind HAProxy on the public entrypoint. Default: one per core.
    gateways: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=32)
    gateway_port: int = 18080
    #: Outbox publisher replicas. One uses `outbox.ops_port`; several are `outbox-publisher-n`
    #: with their ops endpoints on `publisher_ops_port + n`.
    publishers: int = Field(default=1, ge=1, le=8)
    publisher_ops_port: int = 17110
    #: Seconds each component may take to become ready before `stack up` gives up on it.
    ready_timeout_s: float = 90.0
    #: Prometheus beside the services, scraping every ops endpoint and evaluating the alert rules
    #: of deployments/observability/ (the dev stack runs it; the test stacks turn it off).
    prometheus: bool = True
    prometheus_port: int = 9090
    prometheus_scrape_interval_s: float = Field(default=5.0, gt=0)
    #: Route the chat service's PostgreSQL link and the gateways' and publishers' Kafka links
    #: through a fault proxy (Toxiproxy, API on `fault_proxy_port`), so the failure tests can
    #: add latency to them or partition them. Off except in those tests.
    fault_links: bool = False
    fault_proxy_port: int = 17190


class HttpSettings(BaseModel):
    """The public entrypoint (REST + WebSocket)."""

    host: str = "127.0.0.1"
    port: int = 8080


class TracingSettings(BaseModel):
    """OpenTelemetry traces: where spans go."""

    #: "otlp" (OTLP/HTTP to `otlp_endpoint`), "console" (stdout), "none" (no-op).
    exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    #: Share of new traces recorded (child spans follow their parent's decision).
    sample_ratio: float = Field(default=1.0, ge=0, le=1)


class LoggingSettings(BaseModel):
    level: str = "INFO"
    #: "json" for machines, "console" for people at a terminal.
    format: str = "json"


class Settings(BaseSettings):
    """Everything a RealChat process can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="REALCHAT_", env_nested_delimiter="__", extra="ignore"
    )

    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    kafka: KafkaSettings = KafkaSettings()
    chat: ChatSettings = ChatSettings()
    outbox: OutboxSettings = OutboxSettings()
    auth: AuthSettings = AuthSettings()
    gateway: GatewaySettings = GatewaySettings()
    presence: PresenceSettings = PresenceSettings()
    notifier: NotifierSettings = NotifierSettings()
    faults: FaultSettings = FaultSettings()
    stack: StackSettings = StackSettings()
    http: HttpSettings = HttpSettings()
    logging: LoggingSettings = LoggingSettings()
    tracing: TracingSettings = TracingSettings()
    #: Interface of every process's ops endpoint (/metrics, /healthz, /readyz).
    ops_host: str = "127.0.0.1"


def to_environment(settings: Settings, sections: tuple[str, ...]) -> dict[str, str]:
    """The `REALCHAT_*` variables that reproduce the explicitly set fields of `sections`, so a
    child process started with them sees the same settings."""
    env: dict[str, str] = {}
    for section in sections:
        model: BaseModel = getattr(settings, section)
        for name, value in model.model_dump(exclude_defaults=True).items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"REALCHAT_{section.upper()}__{name.upper()}"] = str(value)
    return env


#: The value every secret has in `deployments/.env.example`: a deployment that still uses it is
#: open to anyone who read the example.
PLACEHOLDER_SECRET = "change-me"


def placeholder_secrets(settings: Settings) -> list[str]:
    """The settings whose secret is still the example's placeholder (the services refuse to
    start with any)."""
    found = []
    database = settings.database.url.get_secret_value() if settings.database.url else ""
    if PLACEHOLDER_SECRET in database:
        found.append("REALCHAT_DATABASE__URL (POSTGRES_PASSWORD)")
    if PLACEHOLDER_SECRET in settings.redis.url:
        found.append("REALCHAT_REDIS__URL (REDIS_PASSWORD)")
    token = settings.chat.internal_token
    if token is not None and PLACEHOLDER_SECRET in token.get_secret_value():
        found.append("REALCHAT_CHAT__INTERNAL_TOKEN")
    return found


def load_settings() -> Settings:
    """Read the environment once; the caller passes the result to whatever needs it."""
    return Settings()
