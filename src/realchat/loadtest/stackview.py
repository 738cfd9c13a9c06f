"""What a load test samples of the stack it runs against: pids, ops endpoints, the database,
the gateways' addresses, and (the local stack) an operator that provisions users in bulk."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from realchat.loadtest.population import Operator
from realchat.loadtest.renewal import minting_for
from realchat.stack import process
from realchat.stack.state import StackState
from realchat.stack.supervisor import Stack


@dataclass
class StackView:
    """What the coordinator samples on the server side (all optional)."""

    pids: dict[str, int] = field(default_factory=dict)
    metrics_urls: dict[str, str] = field(default_factory=dict)
    dsn: str | None = None
    gateways: list[str] = field(default_factory=list)
    gateway_urls: list[str] = field(default_factory=list)
    #: The local stack's database and signing key: users provisioned in bulk and reused.
    operator: Operator | None = None
    #: The local stack's state dir: how a process that ended during the run ended.
    state_dir: Path | None = None

    def ended(self) -> dict[str, str]:
        """The processes sampled at the start that no longer run, each with how it ended (as
        the stack's supervisor recorded it): a load test injects no faults, so each one is a
        failure of the run."""
        gone = {name: pid for name, pid in self.pids.items() if not process.is_alive(pid)}
        recorded = StackState(self.state_dir, {}).read() if self.state_dir and gone else {}
        return {
            name: (entry.exit if (entry := recorded.get(name)) and entry.pid == pid else None)
            or "no longer running (how it ended was not recorded)"
            for name, pid in gone.items()
        }


async def stack_view(stack: Stack) -> StackView:
    """What a running stack offers to sample (`realchat stack status`): pids, ops ports, DSN."""
    statuses = await stack.status()
    services = stack.services()
    view = StackView(
        pids={s.name: s.pid for s in statuses if s.pid is not None and s.running},
        metrics_urls={s.name: f"{s.ops_url}/metrics" for s in services},
        gateways=[s.name for s in services if s.name.startswith("gateway")],
        gateway_urls=[f"http://{s.address}" for s in services if s.name.startswith("gateway")],
        state_dir=stack.state_dir,
    )
    if "postgres" in stack.include:
        with contextlib.suppress(OSError, ValueError):
            view.dsn = stack.postgres.dsn()
    if view.dsn is not None:
        auth = stack.app_settings.auth.model_copy(
            update={"private_key_file": stack.signing_keys[0]}
        )
        view.operator = Operator(view.dsn, minting_for(auth), stack.state_dir / "loadtest")
    return view
