"""`realchat loadtest --scenario smoke` on a throw-away stack: a few hundred WebSocket clients
(several devices per user, 1:1 and group conversations) send at an open-loop rate for ~20 s while
a fifth of them read slowly or stall and connections churn; then every client syncs and must hold
every stored message of its conversations. Correctness only: the figures are not judged here."""

from __future__ import annotations

from pathlib import Path

import pytest

from realchat.loadtest.loadgen import run_loadtest
from realchat.loadtest.scenarios import scenario_config
from realchat.loadtest.stackview import stack_view
from realchat.stack.supervisor import Stack
from tests.support.stacks import throwaway_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_loadtest_smoke_loses_nothing_and_keeps_order(tmp_path: Path) -> None:
    settings = throwaway_settings(tmp_path / "stack")
    stack = Stack(settings, report=print)
    config = scenario_config("smoke", output_dir=tmp_path / "report")
    config.base_url = f"http://{settings.http.host}:{settings.http.port}"
    try:
        await stack.up()
        document = await run_loadtest(config, await stack_view(stack), print)
    finally:
        await stack.down()

    [phase] = document["phases"]
    correctness = phase["correctness"]
    print((tmp_path / "report" / "loadtest-smoke.txt").read_text())
    # The load really ran: messages were acknowledged and delivered, clients churned and synced.
    assert document["setup"]["connected"] == config.connections
    assert phase["send_ok"] >= 0.8 * config.rate * config.duration_s
    assert phase["delivered"] > phase["send_ok"]
    assert phase["disconnects"].get("churn", 0) > 0
    assert correctness["clients"] == config.connections
    assert correctness["unverified_clients"] == 0
    assert correctness["messages_checked"] >= phase["send_ok"]
    # What the load test exists to check.
    assert correctness["lost"] == 0, correctness["loss_examples"]
    assert correctness["order_violations"] == 0
    assert correctness["duplicates_to_application"] == 0
    assert correctness["seq_conflicts"] == 0
    assert document["correctness"]["ok"]
    # Every report names the CPU each component spent per message.
    cost = phase["cpu_cost"]
    assert {"chat", "postgres", "kafka", "gateway", "loadgen-0", "total"} <= set(cost)
    assert all(cost[name]["us_per_message"] > 0 for name in ("chat", "gateway", "loadgen-0"))
    assert (tmp_path / "report" / "loadtest-smoke.html").read_text().count("<svg") == 6
