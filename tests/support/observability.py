"""RealChat's observability files (deployments/observability/): where they are and how the tests
read them. Grafana's built-in variables are expanded as Grafana would for the last few minutes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deployments" / "observability"
COMPOSE_FILE = ROOT / "deployments" / "docker-compose.yml"
COMPOSE_PROMETHEUS = OBSERVABILITY / "prometheus" / "prometheus.yml"
ALERTS = OBSERVABILITY / "prometheus" / "alerts.yml"
RECORDING = OBSERVABILITY / "prometheus" / "recording.yml"
DASHBOARDS = sorted((OBSERVABILITY / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = OBSERVABILITY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = OBSERVABILITY / "grafana" / "provisioning" / "dashboards" / "realchat.yml"

#: Grafana's built-in variables, expanded as Grafana would for the last few minutes.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


def load_dashboard(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def expand(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def yaml_value(path: Path, key: str) -> list[str]:
    """The values of `key: value` lines (the files are small and flat enough; no YAML parser)."""
    return re.findall(rf"^\s*-?\s*{key}:\s*(\S+)\s*$", path.read_text(), re.M)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(tool).exists():
        pytest.fail("promtool is missing: scripts/bootstrap.sh installs Debian's prometheus")
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False)
