"""The local stack's scale-out: as many gateways as cores by default, and the HAProxy
configuration it generates for them (round robin, nothing sticky, health from each gateway's
/readyz, so a draining gateway stops getting new clients)."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
from pathlib import Path

import pytest

from realchat.config import GatewaySettings, HttpSettings, Settings, StackSettings
from realchat.stack.haproxy import Balancer
from realchat.stack.supervisor import Stack


def balancer_of(tmp_path: Path, gateways: int) -> Balancer:
    settings = Settings(
        stack=StackSettings(state_dir=tmp_path, gateways=gateways, gateway_port=28080),
        http=HttpSettings(port=28000),
        gateway=GatewaySettings(ops_port=27000),
    )
    balancer = Stack(settings).balancer()
    assert balancer is not None
    return balancer


def test_the_default_is_one_gateway_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    assert StackSettings().gateways == (os.cpu_count() or 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert StackSettings().gateways == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one
    assert StackSettings().gateways == 1


def test_one_gateway_needs_no_balancer(tmp_path: Path) -> None:
    settings = Settings(stack=StackSettings(state_dir=tmp_path, gateways=1))
    assert Stack(settings).balancer() is None


def test_the_balancer_spreads_round_robin_with_nothing_sticky(tmp_path: Path) -> None:
    config = balancer_of(tmp_path, 3).config()
    backend = config[config.index("backend gateways") :]
    assert re.findall(r"^\s*balance (\S+)", config, re.MULTILINE) == ["roundrobin"]
    assert "balance roundrobin" in backend
    for sticky in ("cookie", "stick", "hash-type", "persist", "balance source"):
        assert sticky not in config, sticky
    assert "frontend public\n    bind 127.0.0.1:28000\n" in config


def test_each_gateway_is_a_server_health_checked_on_its_readyz(tmp_path: Path) -> None:
    config = balancer_of(tmp_path, 3).config()
    assert "option httpchk" in config
    assert "http-check send meth GET uri /readyz" in config
    servers = re.findall(r"^\s*server (.+)$", config, re.MULTILINE)
    assert servers == [
        "gateway-1 127.0.0.1:28081 check port 27000",
        "gateway-2 127.0.0.1:28082 check port 27001",
        "gateway-3 127.0.0.1:28083 check port 27002",
    ]


def test_haproxy_accepts_the_generated_configuration(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.fail("haproxy is missing: scripts/bootstrap.sh installs it")
    balancer = balancer_of(tmp_path, 2)
    balancer.prepare()
    checked = subprocess.run(
        [haproxy, "-c", "-f", str(balancer.config_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_connections_and_splicing_pipes_fit_the_descriptor_limit(tmp_path: Path) -> None:
    """HAProxy refuses to start when maxconn's descriptors (two per connection) and its
    splicing pipes' (two per pipe) exceed what it may open."""
    config = balancer_of(tmp_path, 2).config()
    assert "option splice-auto" in config
    maxconn = int(re.findall(r"^\s*maxconn (\d+)$", config, re.MULTILINE)[0])
    maxpipes = int(re.findall(r"^\s*maxpipes (\d+)$", config, re.MULTILINE)[0])
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        assert 2 * maxconn + 2 * maxpipes + 256 <= hard
