"""The compose deployment under test, started by `make compose-test` (scripts/compose-test.sh),
which passes where it listens and how to drive it. These tests are marked `compose` and only
that target selects them; each check's figures go into reports/compose-test.{json,txt}."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "compose-test"
#: Each check's outcome ("passed", "failed", ...) as pytest reports it.
OUTCOMES: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        OUTCOMES[report.nodeid.rsplit("::", 1)[-1]] = report.outcome


@dataclass
class Deployment:
    base_url: str
    #: `docker compose -p ... -f ... --env-file ...` as the script runs it.
    compose: list[str]
    figures: dict[str, Any] = field(default_factory=dict)

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [*self.compose, *args], capture_output=True, text=True, check=True, timeout=120
        )
        return done.stdout

    def containers(self, service: str) -> list[str]:
        return self.run("ps", "--quiet", service).split()

    def address_of(self, container: str) -> str:
        """The container's address on the deployment's network (reachable from this host)."""
        done = subprocess.run(
            ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
             container],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return done.stdout.strip()

    def kill(self, container: str) -> None:
        subprocess.run(["docker", "kill", container], capture_output=True, check=True, timeout=60)


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    url = os.environ.get("REALCHAT_COMPOSE_URL")
    if not url:
        pytest.fail("run through `make compose-test`: REALCHAT_COMPOSE_URL is not set")
    found = Deployment(url, shlex.split(os.environ["REALCHAT_COMPOSE_COMMAND"]))
    started = time.time()
    yield found
    report = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_s": float(os.environ.get("REALCHAT_COMPOSE_BUILD_S", "nan")),
        # COMPOSE_TEST_FRESH=1: every image made again, no image or layer of an earlier run used.
        "images_fresh": os.environ.get("REALCHAT_COMPOSE_FRESH") == "1",
        "startup_s": float(os.environ.get("REALCHAT_COMPOSE_STARTUP_S", "nan")),
        "checks_s": round(time.time() - started, 1),
        "deployment": "deployments/docker-compose.yml + docker-compose.local-images.yml: "
        "PostgreSQL, Redis, Kafka (KRaft), migrate, create-topics, auth, chat, outbox "
        "publisher, presence, 3 gateways behind HAProxy, Prometheus (no Grafana)",
        "outcomes": OUTCOMES,
        "passed": bool(OUTCOMES) and all(o == "passed" for o in OUTCOMES.values()),
        "checks": found.figures,
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"compose test, {report['finished_at']}: {report['deployment']}",
        f"images built in {report['build_s']:.0f} s "
        + (
            "from a clean state (COMPOSE_TEST_FRESH=1: nothing reused)"
            if report["images_fresh"]
            else "(images and layers of earlier runs reused where unchanged)"
        ),
        f"deployment healthy after {report['startup_s']:.0f} s; checks took "
        f"{report['checks_s']:.0f} s",
        "",
        *(f"{name}: {outcome}" for name, outcome in OUTCOMES.items()),
        "",
        *(f"{name}: {json.dumps(value)}" for name, value in found.figures.items()),
        "",
        f"verdict: {'PASS' if report['passed'] else 'FAIL'}",
    ]
    REPORT.with_suffix(".txt").write_text("\n".join(lines) + "\n")
