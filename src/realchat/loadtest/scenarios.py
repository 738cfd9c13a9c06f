"""The load test's scenarios: the configuration of a run, each scenario's overrides of it, and
the phases (send rate, duration, churn) a scenario runs.

`plan` (10k connections, 1,000 msg/s, 20 % slow, 10 %/min churn), `ramp` (rising rates until
p95 >= 100 ms or a loss), `idle` (connections only: memory per connection at the gateways),
`soak` (the plan's load for an hour, judged on flat RSS, lag and error rate), `smoke` (a few
hundred connections for ~20 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT_DIR = Path("bench/results")


@dataclass(frozen=True)
class Phase:
    rate: float
    seconds: float
    churn_per_min: float


@dataclass
class LoadConfig:
    base_url: str = "http://127.0.0.1:8080"
    scenario: str = "plan"
    connections: int = 10_000
    devices_per_user: int = 4
    conversations_per_user: int = 3
    #: Share of conversations that are groups (the rest are 1:1).
    group_share: float = 0.2
    group_size: int = 5
    rate: float = 1000.0
    duration_s: float = 120.0
    #: Share of connections that read slowly (half) or stop reading for a while (half).
    slow_share: float = 0.2
    slow_read_delay_s: float = 0.5
    stall_s: float = 10.0
    stall_every_s: float = 30.0
    #: Share of all connections that close and reconnect per minute.
    churn_per_min: float = 0.1
    workers: int = 2
    register_concurrency: int = 8
    #: Sign up and log in every user through the API even when the stack's database and
    #: signing key are at hand (then users are provisioned in bulk and reused across runs).
    register_over_rest: bool = False
    max_pending_per_connection: int = 20
    #: Ramp: first rate, step, seconds per step, highest rate tried.
    ramp_start: float = 100.0
    ramp_step: float = 100.0
    ramp_step_s: float = 30.0
    ramp_max: float = 2000.0
    ramp_p95_ms: float = 100.0
    idle_settle_s: float = 15.0
    #: Seconds of no traffic before the first phase: each component's idle CPU rate, taken out
    #: of the CPU per message (0: not measured, per-message figures then include idle work).
    idle_cpu_s: float = 5.0
    seed: int = 1
    #: WebSocket entrypoints: worker n connects to ws_urls[n % len] (default: base_url). Direct
    #: gateway addresses spread clients as HAProxy would, without its file-descriptor ceiling.
    ws_urls: list[str] = field(default_factory=list)
    output_dir: Path = DEFAULT_OUTPUT_DIR
    name: str = ""
    notes: list[str] = field(default_factory=list)


SCENARIOS: dict[str, dict[str, Any]] = {
    "plan": {},
    "ramp": {"connections": 2000},
    "idle": {"rate": 0.0, "slow_share": 0.0, "churn_per_min": 0.0, "idle_cpu_s": 0.0},
    # Half the highest rate the plan-shape ramp held at p95 <= 100 ms on the 2-core reference
    # machine (50 msg/s; docs/benchmarks.md): a soak is about drift, not about the ceiling.
    "soak": {"duration_s": 3600.0, "rate": 25.0},
    "smoke": {
        "connections": 300,
        "devices_per_user": 25,
        "conversations_per_user": 2,
        "group_size": 3,
        "rate": 10.0,
        "duration_s": 20.0,
        "churn_per_min": 0.3,
        "workers": 1,
        "register_concurrency": 4,
        "slow_read_delay_s": 0.2,
        "stall_s": 5.0,
        "stall_every_s": 10.0,
    },
}


def scenario_config(scenario: str, **overrides: Any) -> LoadConfig:
    values = {**SCENARIOS[scenario], **{k: v for k, v in overrides.items() if v is not None}}
    return replace(LoadConfig(scenario=scenario), **values)


def phases(config: LoadConfig) -> list[Phase]:
    """The phases `config` runs: none for idle, rising steps for ramp, else one."""
    if config.scenario == "idle":
        return []
    if config.scenario == "ramp":
        steps = int((config.ramp_max - config.ramp_start) // config.ramp_step) + 1
        return [
            Phase(
                config.ramp_start + n * config.ramp_step, config.ramp_step_s, config.churn_per_min
            )
            for n in range(steps)
        ]
    return [Phase(config.rate, config.duration_s, config.churn_per_min)]
