"""A whole stack on one block of 100 ports: what the chaos stack and the tests' throw-away stacks
use, so two stacks on different blocks (and dirs) never meet.

Offsets: presence ops +1, PostgreSQL +2, Redis +3, chat gRPC/ops +4/+5, publisher ops +6 (or
+40+n for several), public entrypoint +7, auth HTTP/ops +8/+9, Kafka node n +10n/+10n+1,
gateway n ops +49+n, gateway n +60+n; with fault links, the fault proxy's API +90 and its
PostgreSQL link +91, Kafka node n's link listeners and their proxies +10n+2 to +10n+5.
"""

from __future__ import annotations

from pathlib import Path

from realchat.config import (
    AuthSettings,
    ChatSettings,
    GatewaySettings,
    HttpSettings,
    KafkaSettings,
    OutboxSettings,
    PresenceSettings,
    Settings,
    StackSettings,
)


def block_offsets(kafka_nodes: int = 1, gateways: int = 1, publishers: int = 1) -> tuple[int, ...]:
    """Every offset a stack of this shape binds (to check a block is free)."""
    return (
        *range(0, 12),
        *(10 * n + d for n in range(2, kafka_nodes + 1) for d in (0, 1)),
        *range(41, 41 + publishers),
        *range(50, 50 + gateways),
        *range(61, 61 + gateways),
        *(10 * n + d for n in range(1, kafka_nodes + 1) for d in range(2, 6)),
        90,
        91,
    )


def block_stack(
    state_dir: Path,
    base: int,
    kafka_nodes: int = 1,
    gateways: int = 1,
    publishers: int = 1,
    kafka_libs_dir: Path = Path(".cache/kafka/libs"),
    kafka_heap_mb: int = 320,
) -> StackSettings:
    return StackSettings(
        state_dir=state_dir,
        kafka_libs_dir=kafka_libs_dir,
        postgres_port=base + 2,
        redis_port=base + 3,
        kafka_port=base + 10,
        kafka_nodes=kafka_nodes,
        kafka_heap_mb=kafka_heap_mb,
        gateways=gateways,
        gateway_port=base + 60,
        publishers=publishers,
        publisher_ops_port=base + 40,
        fault_proxy_port=base + 90,
        prometheus=False,
    )


def block_settings(stack: StackSettings, base: int, presence: PresenceSettings) -> Settings:
    """The services of `stack` on the same block, with `presence` timings."""
    return Settings(
        stack=stack,
        http=HttpSettings(port=base + 7),
        auth=AuthSettings(
            http_port=base + 8, ops_port=base + 9, url=f"http://127.0.0.1:{base + 8}"
        ),
        gateway=GatewaySettings(ops_port=base + 50),
        kafka=KafkaSettings(partitions=6),
        chat=ChatSettings(grpc_port=base + 4, ops_port=base + 5),
        outbox=OutboxSettings(ops_port=base + 6),
        presence=presence.model_copy(update={"ops_port": base + 1}),
    )
