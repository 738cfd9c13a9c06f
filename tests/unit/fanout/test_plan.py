"""Spreading connections over entrypoints, tokens, loopback source addresses and workers."""

from __future__ import annotations

import pytest

from realchat.loadtest.fanout.plan import (
    PER_SOURCE_ADDRESS,
    connection_specs,
    deal,
    shares,
    source_addresses,
    ws_base,
)


def test_each_source_address_stays_under_its_ephemeral_ports() -> None:
    assert source_addresses(1) == ["127.0.0.10"]
    assert len(source_addresses(100_000)) == 100_000 // PER_SOURCE_ADDRESS
    assert len(source_addresses(100_001)) == 100_000 // PER_SOURCE_ADDRESS + 1
    with pytest.raises(ValueError, match="loopback"):
        source_addresses(PER_SOURCE_ADDRESS * 250)


def test_connections_round_robin_over_entrypoints_tokens_and_addresses() -> None:
    specs = connection_specs(["ws://g1", "ws://g2"], ["t0", "t1", "t2"], 45_000, lambda e, t: e)
    assert [s.url for s in specs[:3]] == ["ws://g1", "ws://g2", "ws://g1"]
    assert [s.token for s in specs[:4]] == ["t0", "t1", "t2", "t0"]
    per_address: dict[str, int] = {}
    for spec in specs:
        per_address[spec.source_ip] = per_address.get(spec.source_ip, 0) + 1
    assert len(per_address) == 3
    assert max(per_address.values()) <= PER_SOURCE_ADDRESS
    with pytest.raises(ValueError, match="at least one entrypoint"):
        connection_specs([], ["t"], 1, lambda e, t: e)


def test_workers_get_equal_shares_of_every_prefix() -> None:
    specs = connection_specs(["ws://g"], ["t"], 10, lambda e, t: f"{e}?n={t}")
    dealt = deal(specs, 3)
    assert [len(d) for d in dealt] == [4, 3, 3]
    assert shares(10, 3) == [4, 3, 3]
    assert sum(shares(2500, 2)) == 2500
    with pytest.raises(ValueError, match="at least one client worker"):
        deal(specs, 0)


def test_ws_base() -> None:
    assert ws_base("http://127.0.0.1:8080/") == "ws://127.0.0.1:8080"
    assert ws_base("https://h") == "wss://h"
    with pytest.raises(ValueError, match="not an HTTP URL"):
        ws_base("127.0.0.1:8080")
