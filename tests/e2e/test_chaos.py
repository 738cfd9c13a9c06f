"""The short chaos run (each fault once, a few minutes) on a throw-away stack of its own: three
Kafka nodes, two gateways behind HAProxy, two outbox publishers, presence, and the links from the
chat service to PostgreSQL and from the gateways and publishers to Kafka through a fault proxy.
The invariant checker judges the recorded histories against PostgreSQL and Kafka: nothing lost,
nothing reordered, no duplicate at the application. `make chaos` runs the long version (link
faults held for 20-30 s instead of a few) and writes reports/chaos.*."""

from __future__ import annotations

from pathlib import Path

import pytest

from realchat.chaos.faults import SHORT_FAULTS
from realchat.chaos.run import SHORT, run_chaos
from tests.support.stacks import throwaway_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.timeout(1200)  # 17 faults with restarts: about 8 minutes on a quiet machine
async def test_every_fault_once_loses_and_reorders_nothing(tmp_path: Path) -> None:
    settings = throwaway_settings(
        tmp_path / "stack", kafka_nodes=3, gateways=2, publishers=2, fault_links=True
    )
    faults = list(SHORT_FAULTS.values())
    result = await run_chaos(settings, faults, SHORT, tmp_path / "chaos")
    verdict = result["verdict"]
    assert verdict["ok"], verdict["examples"]
    assert verdict["lost_acknowledged"] == verdict["lost_deliveries"] == 0
    assert verdict["order_violations"] == verdict["app_duplicates"] == 0
    assert verdict["acknowledged"] > 100  # traffic really flowed
    assert verdict["deliveries_checked"] > 8 * verdict["acknowledged"] // 2
    assert [f["fault"] for f in result["faults"]] == [f.name for f in faults]
    for fault in result["faults"]:  # after each fault, new messages flowed again
        assert fault["recovered_after_s"] is not None, fault
    outage = next(f for f in result["faults"] if f["fault"] == "kafka-majority")
    assert outage["send_attempts_refused"] == 0, outage  # the outbox takes writes without a bus
    assert outage["delivered_after_restore_s"] is not None, outage
