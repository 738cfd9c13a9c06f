"""Who may do what, through the real gateway: an outsider of a conversation can neither write,
read, sync, join nor listen to it; a bad token gets 401 on REST and close 4001 on the WebSocket."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from realchat.auth.tokens import TokenIssuer, load_private_key
from tests.e2e.conftest import RealChat
from tests.support.client import Device, User, connect, create_conversation, register, send_rest
from tests.support.rest import assert_error, call

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def barrier(device: Device) -> None:
    """Ping and wait for the pong: whatever the gateway queued to this device before it handled
    the ping has arrived."""
    pongs = len(device.of_type("pong"))
    await device.send({"type": "ping"})
    await device.wait(lambda d: len(d.of_type("pong")) > pongs)


def errors(device: Device) -> list[tuple[str, str | None]]:
    return [(f["code"], f.get("client_msg_id")) for f in device.of_type("error")]


async def test_an_outsider_cannot_send_read_sync_join_or_listen(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice, bob, eve = [await register(http, base, name) for name in ("alice", "bob", "eve")]
    conversation = await create_conversation(http, base, alice, bob)
    unknown = str(uuid.uuid4())
    eves_own = await create_conversation(http, base, eve)

    # REST: 403 for a conversation she is not in, 404 for one that does not exist.
    for target, status, code in (
        (conversation, 403, "not_a_member"),
        (unknown, 404, "conversation_not_found"),
    ):
        url = f"{base}/v1/conversations/{target}"
        sending = {"client_msg_id": uuid.uuid4().hex, "content": "let me in"}
        joining = {"user_ids": [eve.user_id]}
        for method, path, body in (
            ("POST", "messages", sending),
            ("GET", "messages", None),
            ("POST", "members", joining),
        ):
            reply = await call(http, method, f"{url}/{path}", json=body, headers=eve.auth)
            assert_error(reply, status, code)
    status, listed = await call(http, "GET", f"{base}/v1/conversations", headers=eve.auth)
    assert status == 200
    assert [c["conversation_id"] for c in listed["conversations"]] == [eves_own]

    # WebSocket: error frames, nothing else.
    eve_device = await connect(http, base, eve)
    bob_device = await connect(http, base, bob)
    for target in (conversation, unknown):
        sending = {"conversation_id": target, "client_msg_id": f"to-{target}", "content": "hi"}
        await eve_device.send({"type": "send", **sending})
        await eve_device.send({"type": "ack", "conversation_id": target, "seq": 0})
    await eve_device.send({"type": "sync", "positions": {conversation: 0, unknown: 0}})
    await eve_device.wait(lambda d: d.of_type("sync_done"))
    assert errors(eve_device) == [
        ("not_a_member", f"to-{conversation}"),
        ("not_a_member", None),
        ("conversation_not_found", f"to-{unknown}"),
        ("conversation_not_found", None),
        # sync checks against the user's own conversations: both are simply not hers
        ("not_a_member", None),
        ("not_a_member", None),
    ]
    assert eve_device.of_type("sync_done")[0]["positions"] == {}

    # Live traffic of the conversation while she is connected: bob gets it, she gets none of it.
    for n in range(5):
        await send_rest(http, base, alice, conversation, f"private {n}")
    await bob_device.wait(lambda d: d.seqs(conversation) == [1, 2, 3, 4, 5])
    await barrier(eve_device)  # the gateway dispatched each event to bob and eve at once
    assert not [f for f in eve_device.frames if _mentions(f, conversation)], eve_device.frames

    # The same device does get the conversation once she is a member: the check above could see.
    status, _ = await call(
        http,
        "POST",
        f"{base}/v1/conversations/{conversation}/members",
        json={"user_ids": [eve.user_id]},
        headers=alice.auth,
    )
    assert status == 200
    await send_rest(http, base, alice, conversation, "welcome")
    await eve_device.wait(lambda d: d.seqs(conversation) == [6])
    status, history = await call(
        http, "GET", f"{base}/v1/conversations/{conversation}/messages", headers=eve.auth
    )
    assert status == 200
    assert [m["seq"] for m in history["messages"]] == [1, 2, 3, 4, 5, 6]
    await eve_device.close()
    await bob_device.close()


def _mentions(frame: dict[str, Any], conversation_id: str) -> bool:
    message = frame.get("message")
    return frame.get("conversation_id") == conversation_id or (
        isinstance(message, dict) and message.get("conversation_id") == conversation_id
    )


def forged_tokens(realchat: RealChat, user: User) -> dict[str, str]:
    """Tokens for `user` that must all be refused, each for one reason."""
    auth = realchat.settings.auth
    private_path, _ = realchat.services.signing_keys
    key = load_private_key(private_path, str(private_path))

    def issued(
        signing_key: Ed25519PrivateKey = key,
        clock: float | None = None,
        issuer: str = auth.issuer,
        audience: str = auth.audience,
        key_id: str = auth.key_id,
    ) -> str:
        now = time.time() if clock is None else clock
        issuer_ = TokenIssuer(signing_key, key_id, issuer, audience, 600, clock=lambda: now)
        return issuer_.issue(uuid.UUID(user.user_id))[0]

    header, _, signature = user.token.rpartition(".")
    tampered = f"{header}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    now = int(time.time())
    claims = {"sub": user.user_id, "iat": now, "exp": now + 600, "jti": "x"}
    unsigned = jwt.encode(
        {**claims, "iss": auth.issuer, "aud": auth.audience}, key=None, algorithm="none"
    )
    return {
        "garbage": "not-a-token",
        "empty": "",
        "tampered signature": tampered,
        "expired": issued(clock=time.time() - 3600),  # expired 50 minutes ago
        "signed with another key": issued(signing_key=Ed25519PrivateKey.generate()),
        "another issuer": issued(issuer="someone-else"),
        "another audience": issued(audience="someone-else"),
        "unknown key id": issued(key_id="not-our-key"),
        "alg none": unsigned,
    }


async def test_bad_tokens_get_401_on_rest_and_close_4001_on_the_websocket(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice = await register(http, base, "alice")
    conversation = await create_conversation(http, base, alice)
    tokens = forged_tokens(realchat, alice)

    # The forging itself works: the same recipe with nothing wrong is accepted.
    auth = realchat.settings.auth
    private_path, _ = realchat.services.signing_keys
    good = TokenIssuer(
        load_private_key(private_path, str(private_path)),
        auth.key_id,
        auth.issuer,
        auth.audience,
        600,
    ).issue(uuid.UUID(alice.user_id))[0]
    status, listed = await call(
        http, "GET", f"{base}/v1/conversations", headers={"Authorization": f"Bearer {good}"}
    )
    assert status == 200
    assert [c["conversation_id"] for c in listed["conversations"]] == [conversation]

    messages = f"/v1/conversations/{conversation}/messages"
    endpoints: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/v1/conversations", None),
        ("POST", "/v1/conversations", {"member_ids": []}),
        ("POST", f"/v1/conversations/{conversation}/members", {"user_ids": [alice.user_id]}),
        ("GET", messages, None),
        ("POST", messages, {"client_msg_id": "x", "content": "refused"}),
        ("GET", f"/v1/users/by-username/{alice.username}", None),
    ]
    headers_tried: dict[str, dict[str, str]] = {
        "no header": {},
        "not bearer": {"Authorization": f"Basic {alice.token}"},
        "bearer without token": {"Authorization": "Bearer "},
        **{name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()},
    }
    for method, path, body in endpoints:
        for name, headers in headers_tried.items():
            reply = await call(http, method, f"{base}{path}", json=body, headers=headers)
            try:
                assert_error(reply, 401, "unauthorized")
            except AssertionError as exc:
                raise AssertionError(f"{method} {path} with {name}: {exc}") from None
    async with http.get(f"{base}/v1/conversations") as refused:  # RFC 9110: says how to get in
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    status, history = await call(
        http, "GET", f"{base}/v1/conversations/{conversation}/messages", headers=alice.auth
    )
    assert (status, history["messages"]) == (200, []), "a refused send was stored"

    for name, token in {**tokens, "no token": None}.items():
        url = f"{base}/v1/ws" + ("" if token is None else f"?token={token}")
        async with http.ws_connect(url, heartbeat=None) as ws:
            msg = await asyncio.wait_for(ws.receive(), timeout=10)
            assert msg.type is aiohttp.WSMsgType.CLOSE, f"{name}: {msg}"
            assert (msg.data, ws.close_code) == (4001, 4001), f"{name}: {msg}"
