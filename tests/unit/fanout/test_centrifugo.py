"""Centrifugo's configuration (v6 nested keys: an unknown key is only logged, so a typo would
silently change what is measured), its version line and its tokens."""

from __future__ import annotations

from pathlib import Path

import jwt

from realchat.loadtest.fanout.centrifugo import (
    LDFLAGS,
    VERSION,
    CentrifugoConfig,
    binary_path,
    build_command,
    channel,
    client_token,
    installed_version,
    parse_version,
)


def test_config_uses_the_v6_nested_keys(tmp_path: Path) -> None:
    config = CentrifugoConfig("127.0.0.1", 18000, "secret", "key", tmp_path / "c.pid")
    document = config.to_json()
    assert document["http_server"] == {"address": "127.0.0.1", "port": 18000}
    assert document["client"]["token"]["hmac_secret_key"] == "secret"
    assert document["http_api"]["key"] == "key"
    [namespace] = document["channel"]["namespaces"]
    assert namespace["name"] == channel("x").split(":")[0]
    assert namespace["allow_subscribe_for_client"] is True
    assert namespace["force_recovery"] is True
    assert document["admin"] == {"enabled": False}
    assert document["usage_stats"] == {"disabled": True}
    assert config.ws_url == "ws://127.0.0.1:18000/connection/websocket"


def test_the_build_is_pinned_and_stamps_its_version(tmp_path: Path) -> None:
    argv, env = build_command(tmp_path)
    assert argv[-1] == f"github.com/centrifugal/centrifugo/v6@v{VERSION}"
    assert LDFLAGS in argv
    assert f"Version={VERSION}" in LDFLAGS
    assert env["GOBIN"] == str(tmp_path.resolve())
    assert env["GOFLAGS"] == "-mod=mod"
    assert binary_path(Path("rel")).is_absolute()


def test_version_line() -> None:
    assert parse_version("Centrifugo v6.9.1 (Go version: go1.26.8)") == "6.9.1"
    assert parse_version("command not found") is None


def test_a_missing_binary_has_no_version(tmp_path: Path) -> None:
    assert installed_version(tmp_path / "centrifugo") is None


def test_client_token_is_hs256_with_the_user_as_subject() -> None:
    token = client_token("s" * 32, "user-3")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert jwt.decode(token, "s" * 32, algorithms=["HS256"])["sub"] == "user-3"
