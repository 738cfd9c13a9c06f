"""Which connection goes where: entrypoint, token, loopback source address and worker process.

Pure, so the spreading rules are unit-tested. One source address has ~28k ephemeral ports (the
kernel picks a port per source address when the client binds before connecting), so every
`PER_SOURCE_ADDRESS` connections move to the next 127.0.0.x.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from realchat.loadtest.fanout.client import Spec

PER_SOURCE_ADDRESS = 20_000
#: 127.0.0.<FIRST_SOURCE_OCTET + n>: clear of 127.0.0.1, where the servers listen.
FIRST_SOURCE_OCTET = 10


def source_addresses(connections: int, per_address: int = PER_SOURCE_ADDRESS) -> list[str]:
    count = max(1, math.ceil(connections / per_address))
    if FIRST_SOURCE_OCTET + count > 254:
        raise ValueError(f"{connections} connections need more than the loopback /24 offers")
    return [f"127.0.0.{FIRST_SOURCE_OCTET + n}" for n in range(count)]


def connection_specs(
    entrypoints: Sequence[str],
    tokens: Sequence[str],
    count: int,
    url_for: Callable[[str, str], str],
) -> list[Spec]:
    """Connection n: entrypoint n mod E (round robin, as the balancer would), token n mod T,
    source address n mod A."""
    if not entrypoints or not tokens:
        raise ValueError("connections need at least one entrypoint and one token")
    addresses = source_addresses(count)
    return [
        Spec(
            url_for(entrypoints[n % len(entrypoints)], tokens[n % len(tokens)]),
            tokens[n % len(tokens)],
            addresses[n % len(addresses)],
        )
        for n in range(count)
    ]


def deal(specs: Sequence[Spec], workers: int) -> list[list[Spec]]:
    """Round robin over worker processes, so a partial `open` spreads over all of them."""
    if workers < 1:
        raise ValueError("at least one client worker")
    return [list(specs[w::workers]) for w in range(workers)]


def shares(total: int, workers: int) -> list[int]:
    """`total` split over workers as evenly as whole numbers go (the first ones take the rest)."""
    base, rest = divmod(total, workers)
    return [base + (1 if w < rest else 0) for w in range(workers)]


def ws_base(http_url: str) -> str:
    """http://host:port -> ws://host:port (https -> wss)."""
    if not http_url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP URL: {http_url}")
    return "ws" + http_url.removeprefix("http").rstrip("/")
