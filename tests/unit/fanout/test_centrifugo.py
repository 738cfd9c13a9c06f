"""Centrifugo's configuration (v6 nested keys: an unknown key is only logged, so a typo would
silently change what is measured), its version line and its tokens."""

from __future__ import annotations

from pathlib import Path

import jwt

from realchat.loadtest.fanout.centrifugo import CentrifugoConfig, channel, client_token


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


def test_client_token_is_hs256_with_the_user_as_subject() -> None:
    token = client_token("s" * 32, "user-3")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert jwt.decode(token, "s" * 32, algorithms=["HS256"])["sub"] == "user-3"
