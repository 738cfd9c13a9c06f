"""deployments/observability/ without a running stack: the Grafana dashboards are well-formed
JSON wired to the provisioned Prometheus data source, and promtool accepts the rules and the
compose configuration. (Their queries are evaluated against a running stack in
tests/e2e/test_dashboards.py.)"""

from __future__ import annotations

import json
import re

from tests.support.observability import (
    ALERTS,
    COMPOSE_FILE,
    COMPOSE_PROMETHEUS,
    DASHBOARDS,
    DATASOURCES,
    PROVIDERS,
    RECORDING,
    all_panels,
    expand,
    load_dashboard,
    promtool,
    yaml_value,
)


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_recording_rules() -> None:
    result = promtool("check", "rules", str(RECORDING))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_compose_configuration() -> None:
    # Its rule_files are alerts.yml and recording.yml next to it: promtool checks them as well.
    result = promtool("check", "config", str(COMPOSE_PROMETHEUS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


def test_dashboards_are_well_formed_grafana_json() -> None:
    assert DASHBOARDS, "no dashboards"
    datasource_uids = yaml_value(DATASOURCES, "uid")
    assert len(datasource_uids) == 1
    datasource = {"type": "prometheus", "uid": datasource_uids[0]}
    # Grafana reaches the compose service `prometheus` on its container port.
    assert yaml_value(DATASOURCES, "url") == ["http://prometheus:9090"]
    # The provider reads the directory docker-compose.yml mounts the dashboards at.
    (provider_path,) = yaml_value(PROVIDERS, "path")
    assert f"target: {provider_path}" in COMPOSE_FILE.read_text()
    uids, titles = set(), set()
    for path in DASHBOARDS:
        dashboard = load_dashboard(path)
        where = path.name
        assert dashboard["uid"], where
        assert dashboard["uid"] not in uids, where
        assert dashboard["title"], where
        assert dashboard["title"] not in titles, where
        uids.add(dashboard["uid"])
        titles.add(dashboard["title"])
        assert isinstance(dashboard["schemaVersion"], int), where
        panels = list(all_panels(dashboard["panels"]))
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{where}: panel ids repeat: {ids}"
        assert not any("$" in v for v in json.dumps(dashboard.get("templating", {}))), where
        for panel in panels:
            at = f"{where} panel {panel['id']}"
            assert panel["title"], at
            grid = panel["gridPos"]
            assert grid["x"] >= 0, at
            assert grid["x"] + grid["w"] <= 24, at
            assert grid["h"] > 0, at
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == datasource, at
            targets = panel["targets"]
            assert targets, f"{at}: no queries"
            refs = [t["refId"] for t in targets]
            assert len(refs) == len(set(refs)), f"{at}: refIds repeat"
            for target in targets:
                assert target["datasource"] == datasource, at
                assert isinstance(target["expr"], str), at
                assert target["expr"].strip(), at
                leftover = re.findall(r"\$\w+", expand(target["expr"]))
                assert not leftover, f"{at}: variables the test does not know: {leftover}"
