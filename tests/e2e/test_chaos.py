"""The short chaos run (each fault once, a few minutes) on a throw-away stack of its own: three
Kafka nodes, two gateways behind HAProxy, two outbox publishers, presence. The invariant checker
judges the recorded histories against PostgreSQL and Kafka: nothing lost, nothing reordered, no
duplicate at the application. `make chaos` runs the long version and writes reports/chaos.*."""

from __future__ import annotations

from pathlib import Path

import pytest

from realchat.chaos.faults import FAULTS
from realchat.chaos.run import SHORT, run_chaos
from tests.support.stacks import throwaway_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_every_fault_once_loses_and_reorders_nothing(tmp_path: Path) -> None:
    settings = throwaway_settings(tmp_path / "stack", kafka_nodes=3, gateways=2, publishers=2)
    result = await run_chaos(settings, list(FAULTS.values()), SHORT, tmp_path / "chaos")
    verdict = result["verdict"]
    assert verdict["ok"], verdict["examples"]
    assert verdict["lost_acknowledged"] == verdict["lost_deliveries"] == 0
    assert verdict["order_violations"] == verdict["app_duplicates"] == 0
    assert verdict["acknowledged"] > 100  # traffic really flowed
    assert verdict["deliveries_checked"] > 8 * verdict["acknowledged"] // 2
    assert [f["fault"] for f in result["faults"]] == list(FAULTS)
    for fault in result["faults"]:  # after each fault, new messages flowed again
        assert fault["recovered_after_s"] is not None, fault
