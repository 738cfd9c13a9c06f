"""Chat service metrics, and the decorator that times and traces each store query."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Histogram

from realchat.observability.tracing import span

GRPC_REQUESTS = Counter(
    "realchat_chat_grpc_requests_total",
    "gRPC calls handled, by method and status code (OK, INVALID_ARGUMENT, ...)",
    ["method", "code"],
)
GRPC_DURATION = Histogram(
    "realchat_chat_grpc_request_duration_seconds", "gRPC call duration", ["method"]
)
DB_LATENCY = Histogram(
    "realchat_chat_db_query_latency_seconds",
    "PostgreSQL round trips of the chat store, by operation",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
GROUP_COMMIT_BATCH_SIZE = Histogram(
    "realchat_chat_group_commit_batch_size",
    "Sends written per group-commit batch (one statement, one transaction)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

P = ParamSpec("P")
R = TypeVar("R")


def db_operation(name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Time a store method into `DB_LATENCY{operation=name}` and give it a client span."""
    histogram = DB_LATENCY.labels(operation=name)

    def decorate(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(method)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            with span(
                f"db {name}",
                kind=SpanKind.CLIENT,
                attributes={"db.system": "postgresql", "db.operation": name},
            ):
                try:
                    return await method(*args, **kwargs)
                finally:
                    histogram.observe(time.perf_counter() - started)

        return timed

    return decorate
