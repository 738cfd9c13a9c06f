"""`realchat bench latency` in miniature on the e2e stack: two real WebSocket clients, every
message delivered and acknowledged, and every moment of every message observed (the database's,
the bus watch's, the clients'), so each stage of the breakdown has all its samples. The figures
are not judged here."""

from __future__ import annotations

from pathlib import Path

import pytest

from realchat.loadtest.bench_report import write_atomically
from realchat.loadtest.latency.run import LatencyOptions, run_bench_latency
from realchat.loadtest.latency.trips import STAGES
from tests.e2e.conftest import RealChat

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_bench_latency_smoke_observes_every_stage(realchat: RealChat, tmp_path: Path) -> None:
    options = LatencyOptions(messages=6, rate=20.0, warmup=1, entry="direct")
    report = await run_bench_latency(realchat.settings, options, print)
    output = tmp_path / "bench-latency.json"
    write_atomically(output, report.to_json())
    print(output.read_text())

    result = report.result
    assert result.messages == 6
    assert result.lost == 0
    assert result.send_to_delivery is not None
    assert [s.samples for s in result.stages] == [6] * len(STAGES)
    assert all(s.samples == 6 for s in result.side_stages)
    assert report.notes == []
