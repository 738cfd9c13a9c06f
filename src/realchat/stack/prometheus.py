"""Prometheus next to the local stack: scrapes every RealChat process's ops endpoint and evaluates
the alert and recording rules of deployments/observability/prometheus/ (alerts.yml, recording.yml:
the same files the Docker Compose deployment mounts).

The scrape configuration is generated from the stack's settings on every start, so it follows
the ports and the number of gateways. It is written as JSON, which is YAML too.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realchat.stack.component import ListensLocally, expect_http_ok
from realchat.stack.process import ProcessSpec, installed

#: The rules of the checkout (the stack runs from a checkout; an installed package has none).
RULES_DIR = Path(__file__).resolve().parents[3] / "deployments" / "observability" / "prometheus"
ALERT_RULES = RULES_DIR / "alerts.yml"
#: The dashboards' headline series, recorded (Prometheus' /graph without Grafana).
RECORDING_RULES = RULES_DIR / "recording.yml"


def duration(seconds: float) -> str:
    """A Prometheus duration: `5s`, or `1500ms` when not a whole number of seconds."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


@dataclass
class Prometheus(ListensLocally):
    state_dir: Path
    host: str
    port: int
    #: Scrape targets (`host:port` of an ops endpoint) by job; the jobs are the compose services'
    #: names, so dashboards and alerts work unchanged on both.
    targets: Mapping[str, Sequence[str]] = field(default_factory=dict)
    scrape_interval_s: float = 5.0
    retention: str = "7d"
    rule_files: Sequence[Path] = (ALERT_RULES, RECORDING_RULES)

    name: str = "prometheus"
    #: SIGTERM: Prometheus stops scraping, flushes its head block and exits.
    stop_signal: signal.Signals = signal.SIGTERM
    stop_grace_s: float = 15.0

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "prometheus" / "prometheus.yml"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "prometheus" / "data"

    def config(self) -> dict[str, Any]:
        interval = duration(self.scrape_interval_s)
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(path.resolve()) for path in self.rule_files if path.exists()],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
                for job, addresses in self.targets.items()
                if addresses
            ],
        }

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config(), indent=2) + "\n")

    def process_spec(self) -> ProcessSpec:
        prometheus = installed("prometheus")
        return ProcessSpec(
            argv=[
                prometheus,
                f"--config.file={self.config_path.resolve()}",
                f"--storage.tsdb.path={self.data_dir.resolve()}",
                f"--storage.tsdb.retention.time={self.retention}",
                f"--web.listen-address={self.address}",
            ],
            log_path=self.log_path,
        )

    async def probe(self) -> None:
        await expect_http_ok(f"{self.url}/-/ready")
