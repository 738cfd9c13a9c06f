"""The dashboards and alerts of deployments/observability/ hold against the real thing.

A throw-away stack runs with its Prometheus (the stack's own component, config generated from the
stack's ports, the shared alerts.yml, 1 s scrapes); a little traffic makes the processes' metrics
exist; then every Grafana panel query and every alert expression is evaluated through Prometheus'
HTTP API, and so is every recording rule (recording.yml: the headline series under names of
their own, Prometheus' stand-in for the dashboards). Each must evaluate, return series, and name
only metrics some process exposes. Alerts
are written `<signal> <comparison> <threshold>` (alerts.yml says so); the signal is what is
evaluated, since the alert itself is rightly empty while nothing is wrong. A query with a
misspelt metric name fails; `test_a_misspelt_metric_fails_the_check` proves that of the check.

The files themselves (dashboard JSON structure, promtool's checks) are tested without a stack:
tests/unit/test_observability_files.py.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from realchat.stack.prometheus import Prometheus
from realchat.stack.supervisor import Stack
from tests.support.client import connect, create_conversation, register, send_rest
from tests.support.observability import (
    ALERTS,
    COMPOSE_PROMETHEUS,
    DASHBOARDS,
    RECORDING,
    all_panels,
    expand,
    load_dashboard,
    promtool,
    yaml_value,
)
from tests.support.ports import free_port_block
from tests.support.push_gateway import RecordingPushGateway
from tests.support.rest import call
from tests.support.stacks import ROOT, throwaway_settings
from tests.support.waiting import eventually_async

RUNBOOK = ROOT / "docs" / "operations.md"

#: alerts.yml's convention: `<signal> <comparison> <threshold>` at the top level.
ALERT_EXPR = re.compile(r"^(?P<signal>.+?)\s*(?:>=|<=|==|!=|>|<)\s*-?\d+(?:\.\d+)?\s*$", re.S)
METRIC_NAME = re.compile(r"\brealchat_[a-z0-9_]+\b")
SEVERITIES = {"critical", "warning"}
SCRAPE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Query:
    where: str
    expr: str


# -- the files ---------------------------------------------------------------------------------


def panel_queries() -> list[Query]:
    found = []
    for path in DASHBOARDS:
        for panel in all_panels(load_dashboard(path)["panels"]):
            for target in panel.get("targets", []):
                where = f"{path.name} panel {panel['id']} {panel['title']!r} {target['refId']}"
                found.append(Query(where, expand(target["expr"])))
    return found


def runbook_anchors() -> set[str]:
    """GitHub's anchors of the headings of docs/operations.md."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", RUNBOOK.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


# -- Prometheus against a running stack ----------------------------------------------------------


@dataclass
class Observed:
    stack: Stack
    prometheus: Prometheus
    http: aiohttp.ClientSession
    #: Metric names some scraped process exposes (from their # TYPE lines, samples or not).
    exposed: set[str]

    async def api(self, path: str, **params: str) -> dict[str, Any]:
        async with self.http.get(f"{self.prometheus.url}/api/v1/{path}", params=params) as reply:
            body: dict[str, Any] = await reply.json()
            return body

    async def series(self, expr: str) -> list[dict[str, Any]]:
        body = await self.api("query", query=expr)
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def problems(self, query: Query) -> list[str]:
        """What is wrong with one query: it does not evaluate, returns nothing, or names a
        metric no process exposes."""
        found = []
        body = await self.api("query", query=query.expr)
        if body["status"] != "success":
            found.append(f"{query.where}: does not evaluate ({body.get('error')}): {query.expr}")
        elif not body["data"]["result"]:
            found.append(f"{query.where}: returns no series: {query.expr}")
        for name in sorted(set(METRIC_NAME.findall(query.expr))):
            family = re.sub(r"_(bucket|count|sum)$", "", name)
            if name not in self.exposed and family not in self.exposed:
                found.append(f"{query.where}: no process exposes {name}")
        return found


async def drive_traffic(http: aiohttp.ClientSession, base: str) -> None:
    """A little of everything, so that the counters, gauges and histograms have series."""
    alice = await register(http, base, "alice")
    bob = await register(http, base, "bob")
    stranger = await register(http, base, "stranger")
    conversation = await create_conversation(http, base, alice, bob)
    sender = await connect(http, base, alice)
    reader = await connect(http, base, bob)
    await send_rest(http, base, alice, conversation, "over REST")
    await sender.send(
        {
            "type": "send",
            "conversation_id": conversation,
            "client_msg_id": uuid.uuid4().hex,
            "content": "over the WebSocket",
        }
    )
    await sender.wait(lambda d: d.of_type("send_ok"))
    await reader.wait(lambda d: len(d.seqs(conversation)) >= 2)  # delivered through Kafka
    await reader.send({"type": "ack", "conversation_id": conversation, "seq": 2})
    await sender.wait(lambda d: d.of_type("receipt"))
    await reader.send({"type": "sync"})
    await reader.wait(lambda d: d.of_type("sync_done"))
    await reader.send({"type": "no_such_frame"})
    await reader.wait(lambda d: d.of_type("error"))
    url = f"{base}/v1/conversations/{conversation}/messages"
    status, _ = await call(http, "GET", url, headers=alice.auth)
    assert status == 200
    status, _ = await call(http, "GET", url, headers=stranger.auth)  # a caller error
    assert status == 403
    status, _ = await call(
        http, "GET", f"{base}/v1/presence?user_ids={bob.user_id}", headers=alice.auth
    )
    assert status == 200
    await reader.close()  # bob goes offline
    await sender.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def observed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Observed]:
    settings = throwaway_settings(tmp_path_factory.mktemp("dashboards") / "stack")
    port = free_port_block(offsets=(0,))
    while port // 100 == settings.stack.postgres_port // 100:  # not in the stack's own block
        port = free_port_block(offsets=(0,))
    stack_settings = settings.stack.model_copy(
        update={
            "prometheus": True,
            "prometheus_port": port,
            "prometheus_scrape_interval_s": SCRAPE_INTERVAL_S,
        }
    )
    # A notifier too (it runs only with a push gateway to call), for the notifications dashboard.
    push_gateway = RecordingPushGateway()
    await push_gateway.start()
    notifier = settings.notifier.model_copy(
        update={"webhook_url": push_gateway.url, "delay_s": 0.5}
    )
    stack = Stack(
        settings.model_copy(update={"stack": stack_settings, "notifier": notifier}), report=print
    )
    prometheus = stack.prometheus()
    assert prometheus is not None
    try:
        await stack.up()
        async with aiohttp.ClientSession() as http:
            observed = Observed(stack, prometheus, http, set())
            ops = {s.ops_url.removeprefix("http://") for s in stack.services()}

            async def scraped() -> set[str]:
                return {s["metric"]["instance"] for s in await observed.series("up == 1")}

            assert await eventually_async(scraped, lambda seen: seen == ops, 60) == ops
            await drive_traffic(http, f"http://127.0.0.1:{settings.http.port}")
            done = time.time()

            async def last_scrape() -> float:
                oldest = await observed.series("min(timestamp(up))")
                return float(oldest[0]["value"][1]) if oldest else 0.0

            # Two scrapes of every target after the traffic: rate() needs two samples.
            assert await eventually_async(last_scrape, lambda t: t > done + 2.5, 30) > done + 2.5
            observed.exposed = set((await observed.api("metadata"))["data"])
            yield observed
    finally:
        await stack.down()
        await push_gateway.close()


async def test_the_stack_scrapes_every_process_under_the_compose_job_names(
    observed: Observed,
) -> None:
    result = promtool("check", "config", str(observed.prometheus.config_path))
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads(observed.prometheus.config_path.read_text())
    assert config["rule_files"] == [str(ALERTS.resolve()), str(RECORDING.resolve())]
    jobs = {s["metric"]["job"] for s in await observed.series("up")}
    # Compose runs no notifier: it needs the operator's push gateway (docs/notifications.md).
    assert jobs == set(yaml_value(COMPOSE_PROMETHEUS, "job_name")) | {"notifier"}
    assert jobs == {"gateway", "chat", "outbox-publisher", "presence", "auth", "notifier"}


# -- dashboards ----------------------------------------------------------------------------------


async def test_every_panel_query_returns_series(observed: Observed) -> None:
    queries = panel_queries()
    assert len(queries) >= 20
    problems = [p for q in queries for p in await observed.problems(q)]
    assert not problems, "\n".join(problems)


async def test_a_misspelt_metric_fails_the_check(observed: Observed) -> None:
    """The check above can fail: a panel query with a typo in its metric name is caught."""
    query = next(q for q in panel_queries() if METRIC_NAME.search(q.expr) and " or " not in q.expr)
    assert await observed.problems(query) == []
    name = METRIC_NAME.findall(query.expr)[0]
    typo = Query(query.where, query.expr.replace(name, name[:-1], 1))
    problems = await observed.problems(typo)
    assert any("returns no series" in p for p in problems), problems
    assert any(f"no process exposes {name[:-1]}" in p for p in problems), problems


# -- alerts --------------------------------------------------------------------------------------


async def loaded_rules(observed: Observed, kind: str = "alerting") -> list[dict[str, Any]]:
    """The rules Prometheus loaded, of one type ("alerting" or "recording")."""
    body = await observed.api("rules")
    assert body["status"] == "success", body
    rules = [rule for group in body["data"]["groups"] for rule in group["rules"]]
    return [rule for rule in rules if rule["type"] == kind]


async def test_prometheus_loads_and_evaluates_every_alert(observed: Observed) -> None:
    declared = yaml_value(ALERTS, "alert")
    assert len(declared) == len(set(declared)) >= 8

    async def rules() -> list[dict[str, Any]]:
        return await loaded_rules(observed)

    def evaluated(found: list[dict[str, Any]]) -> bool:
        return all(r["health"] == "ok" for r in found)

    found = await eventually_async(rules, evaluated, 30)
    assert sorted(r["name"] for r in found) == sorted(declared)
    broken = {r["name"]: r.get("lastError") for r in found if r["health"] != "ok"}
    assert not broken
    anchors = runbook_anchors()
    for rule in found:
        name = rule["name"]
        assert rule["type"] == "alerting", name
        assert rule["labels"].get("severity") in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations.get("summary"), name
        assert annotations.get("description"), name
        runbook = annotations.get("runbook_url", "")
        assert runbook.startswith("docs/operations.md#"), name
        assert runbook.split("#", 1)[1] in anchors, f"{name}: no section {runbook}"


async def test_every_alert_signal_returns_series(observed: Observed) -> None:
    problems = []
    for rule in await loaded_rules(observed):
        match = ALERT_EXPR.match(rule["query"])
        if match is None:
            problems.append(f"{rule['name']}: not `<signal> <comparison> <threshold>`")
            continue
        signal = Query(f"alert {rule['name']}", match["signal"])
        problems.extend(await observed.problems(signal))
    assert not problems, "\n".join(problems)


# -- recording rules -----------------------------------------------------------------------------


async def test_every_recording_rule_is_loaded_and_returns_series(observed: Observed) -> None:
    declared = yaml_value(RECORDING, "record")
    assert len(declared) == len(set(declared)) >= 10
    found = await loaded_rules(observed, "recording")
    assert sorted(r["name"] for r in found) == sorted(declared)
    problems = []
    for rule in found:
        if rule["health"] == "err":
            problems.append(f"recording {rule['name']}: {rule.get('lastError')}")
        problems.extend(await observed.problems(Query(f"recording {rule['name']}", rule["query"])))
    assert not problems, "\n".join(problems)


async def test_recorded_series_appear_under_their_names(observed: Observed) -> None:
    """What a user types into /graph: the recorded name itself, once Prometheus evaluated it."""
    name = "realchat:gateway_active_connections:sum"
    assert name in yaml_value(RECORDING, "record")

    async def recorded() -> list[dict[str, Any]]:
        return await observed.series(name)

    assert await eventually_async(recorded, bool, 30)
