"""`realchat bench fanout` in miniature on the e2e stack (one gateway, no HAProxy): the whole
harness path runs (provisioning, client workers, both blocks, the report), every message reaches
every subscriber, and the figures are there. Centrifugo joins only where its binary was built
(`make bench-fanout` builds it; CI never does). The figures are not judged here."""

from __future__ import annotations

from pathlib import Path

import pytest

from realchat.loadtest.fanout.centrifugo import DEFAULT_CACHE_DIR
from realchat.loadtest.fanout.run import FanoutOptions, run_bench_fanout, write
from realchat.stack.gotool import CENTRIFUGO
from tests.e2e.conftest import RealChat

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_bench_fanout_smoke_delivers_everything(realchat: RealChat, tmp_path: Path) -> None:
    with_peer = CENTRIFUGO.installed_version(DEFAULT_CACHE_DIR) == CENTRIFUGO.version
    options = FanoutOptions(
        seconds=2.0,
        rates=(20.0,),
        subscribers=40,
        users=2,
        entries=("direct",),
        idle_connections=60,
        idle_steps=2,
        idle_settle_s=1.0,
        idle_cpu_s=0.5,
        workers=1,
        fresh_gateways=False,  # the session's gateway is shared with other tests
        servers=("centrifugo", "realchat") if with_peer else ("realchat",),
        output=tmp_path / "bench-fanout.json",
    )
    document = await run_bench_fanout(realchat.settings, options, print)
    text = write(document, options.output)
    print(text.read_text())

    fanout = {r["server"]: r for r in document["fanout"]}
    ours = fanout["realchat"]
    assert ours["published"] == 40
    assert ours["delivered"] == ours["expected"] == 40 * 40
    assert ours["edge_us_per_delivery"] > 0
    assert ours["latency_ms"]["count"] == 1600
    assert ours["cpu"]["chat"]["cpu_s"] >= 0
    [idle] = [r for r in document["idle"] if r["server"] == "realchat"]
    assert idle["connections"] == 60
    assert "gateways" in idle["kib_per_connection"]
    if with_peer:
        assert fanout["centrifugo"]["delivered"] == fanout["centrifugo"]["expected"] == 1600
        assert document["ratios_realchat_over_centrifugo"]
