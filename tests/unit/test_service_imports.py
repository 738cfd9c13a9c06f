"""The services run without the tools: no service process loads the load generator, the chaos
runner, the local stack's supervisor or the `tools` extra's packages (hdrhistogram), so the
service image can leave them out."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: What only the tools (`realchat stack`, `realchat loadtest`, `realchat chaos`, the benchmarks)
#: may load.
TOOLS_ONLY = ("hdrh", "realchat.loadtest", "realchat.chaos", "realchat.stack")

#: Each service's entrypoint, as `realchat <service>` (realchat.cli) imports it.
SERVICE_MODULES = (
    "realchat.chat.server",
    "realchat.gateway.server",
    "realchat.outbox.publisher",
    "realchat.presence.server",
    "realchat.auth.server",
    "realchat.notifier.service",
)


def tools_loaded_by(*modules: str) -> list[str]:
    """The tools-only modules a fresh interpreter holds after importing `modules`."""
    probe = (
        f"import sys, importlib\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(' '.join(sorted(m for m in sys.modules "
        f"if any(m == t or m.startswith(t + '.') for t in {TOOLS_ONLY!r}))))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return found.split()


@pytest.mark.parametrize("module", SERVICE_MODULES)
def test_a_service_and_the_command_line_load_nothing_of_the_tools(module: str) -> None:
    assert tools_loaded_by("realchat.cli", module) == []


def test_the_probe_sees_the_tools_when_they_are_loaded() -> None:
    found = tools_loaded_by("realchat.loadtest.aggregation")
    assert "hdrh" in found
    assert "realchat.loadtest.aggregation" in found
