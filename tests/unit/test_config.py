import os
import subprocess
import sys
from pathlib import Path

import pytest

from realchat.config import load_settings, placeholder_secrets


def test_defaults_describe_the_local_dev_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("REALCHAT_"):
            monkeypatch.delenv(key)
    settings = load_settings()
    assert settings.http.port == 8080
    assert settings.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert settings.database.url is None


def test_nested_sections_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALCHAT_KAFKA__PARTITIONS", "24")
    monkeypatch.setenv("REALCHAT_STACK__STATE_DIR", "/srv/realchat")
    monkeypatch.setenv("REALCHAT_DATABASE__URL", "postgresql://u:hunter2@db/realchat")
    settings = load_settings()
    assert settings.kafka.partitions == 24
    assert settings.stack.state_dir == Path("/srv/realchat")
    assert settings.database.url is not None
    assert settings.database.url.get_secret_value().endswith("@db/realchat")
    assert "hunter2" not in repr(settings)


def test_invalid_values_are_rejected_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALCHAT_KAFKA__PARTITIONS", "0")
    with pytest.raises(ValueError, match="partitions"):
        load_settings()


def test_the_examples_placeholder_secrets_are_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALCHAT_DATABASE__URL", "postgresql://realchat:change-me@postgres/rc")
    monkeypatch.setenv("REALCHAT_REDIS__URL", "redis://:change-me@redis:6379/0")
    monkeypatch.setenv("REALCHAT_CHAT__INTERNAL_TOKEN", "change-me")
    assert len(placeholder_secrets(load_settings())) == 3
    monkeypatch.setenv("REALCHAT_DATABASE__URL", "postgresql://realchat:5f0c9a@postgres/rc")
    monkeypatch.setenv("REALCHAT_REDIS__URL", "redis://:77aa01@redis:6379/0")
    monkeypatch.setenv("REALCHAT_CHAT__INTERNAL_TOKEN", "0c4e1d")
    assert placeholder_secrets(load_settings()) == []


@pytest.mark.parametrize("command", ["chat-service", "migrate"])
def test_a_service_refuses_to_start_with_placeholder_secrets(command: str) -> None:
    env = {
        **os.environ,
        "REALCHAT_DATABASE__URL": "postgresql://realchat:change-me@127.0.0.1:1/realchat",
        "REALCHAT_CHAT__INTERNAL_TOKEN": "change-me",
    }
    refused = subprocess.run(
        [sys.executable, "-m", "realchat", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "refusing to start" in refused.stderr
    assert "REALCHAT_CHAT__INTERNAL_TOKEN" in refused.stderr
