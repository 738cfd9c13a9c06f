"""Bad input through the real gateway: refused with the contract's codes, never a crash, never a
500; the connection or the process survives what it should."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import RealChat
from tests.support.client import Device, connect, create_conversation, register
from tests.support.rest import assert_error, call

pytestmark = pytest.mark.asyncio(loop_scope="session")


def replies(device: Device) -> list[dict[str, Any]]:
    """Every frame after `hello`."""
    return [f for f in device.frames if f["type"] != "hello"]


async def pong_after_a_pause(device: Device, frames_per_s: float) -> None:
    """Wait as long as the frame limit refills one token, then ping: a client keeping to the
    limit gets its pong (the connection is open and answering)."""
    await asyncio.sleep(1 / frames_per_s)
    seen = len(device.frames)
    await device.send({"type": "ping"})
    await device.wait(lambda d: len(d.frames) > seen, timeout_s=10)
    assert device.frames[seen] == {"type": "pong"}, device.frames[seen]


async def wait_closed(device: Device, timeout_s: float = 15) -> int | None:
    """Until the server closed the connection; its close code."""
    assert device.reader is not None
    await asyncio.wait_for(device.reader, timeout_s)
    return device.ws.close_code


# -- WebSocket -------------------------------------------------------------------------------------


async def test_bad_frames_get_error_frames_and_the_connection_stays_open(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice = await register(http, base, "alice")
    conversation = await create_conversation(http, base, alice)
    device = await connect(http, base, alice)

    def j(**fields: Any) -> str:
        return json.dumps(fields)

    def send(conversation_id: str, client_msg_id: str, content: str) -> str:
        return j(
            type="send",
            conversation_id=conversation_id,
            client_msg_id=client_msg_id,
            content=content,
        )

    c = conversation
    #: (frame, error code, client_msg_id in the error)
    bad: list[tuple[str, str, str | None]] = [
        ("this is not json", "invalid_json", None),
        ('{"type": "ping"', "invalid_json", None),
        ('{"type": "ping", "deep": ' + "[" * 20_000 + "}", "invalid_json", None),
        ("[1, 2, 3]", "invalid_frame", None),
        ('"send"', "invalid_frame", None),
        (j(type="dance"), "unknown_type", None),
        (j(type=7), "invalid_frame", None),
        (j(conversation_id=c, seq=1), "missing_type", None),
        (j(type="send", conversation_id=5, client_msg_id="a", content="x"), "invalid_frame", None),
        (j(type="send", conversation_id=c), "invalid_frame", None),
        (j(type="ack", conversation_id=c, seq="1"), "invalid_frame", None),
        (j(type="ack", conversation_id=c, seq=2**63), "invalid_frame", None),
        (j(type="sync", positions=[c]), "invalid_frame", None),
        (j(type="sync", positions={c: 2**64}), "invalid_frame", None),
        (j(type="ack", conversation_id=c, seq=5), "invalid_seq", None),  # nothing sent yet
        (send(c, "empty", ""), "invalid_content", "empty"),
        (send(c, "long", "x" * 4001), "invalid_content", "long"),
        (send(c, "", "no id"), "invalid_client_msg_id", ""),
        (send(c, "i" * 65, "id too long"), "invalid_client_msg_id", "i" * 65),
        (send("not-a-uuid", "elsewhere", "hi"), "invalid_conversation_id", "elsewhere"),
        # Ids far beyond any valid one are refused by the frame's bounds and never echoed.
        (send(c, "i" * 30_000, "huge id"), "invalid_frame", None),
        (send("c" * 30_000, "huge conversation id", "hi"), "invalid_frame", None),
    ]
    for text, _, _ in bad:
        await device.ws.send_str(text)
    await device.ws.send_bytes(b'{"type": "ping"}')
    await device.send({"type": "ping"})
    await device.wait(lambda d: d.of_type("pong"))

    got = replies(device)
    expected = [code for _, code, _ in bad] + ["invalid_frame"]
    assert [f["type"] for f in got] == ["error"] * len(expected) + ["pong"], got
    assert [f["code"] for f in got[:-1]] == expected
    for frame, (_, _, client_msg_id) in zip(got, bad, strict=False):
        assert isinstance(frame["message"], str)
        assert frame["message"]
        assert frame.get("client_msg_id") == client_msg_id
        assert len(json.dumps(frame)) < 1024  # what a client sends is not echoed unbounded

    # A sync with a bad position: an error for it, the rest of the sync goes on.
    await device.send({"type": "sync", "positions": {conversation: -1}})
    await device.wait(lambda d: d.of_type("sync_done"))
    sync_replies = replies(device)[len(got) :]
    assert [(f["type"], f.get("code")) for f in sync_replies] == [
        ("error", "invalid_seq"),
        ("sync_done", None),
    ]
    assert sync_replies[-1]["positions"] == {}

    # Nothing above was sent as a message, and the session still works.
    await device.ws.send_str(send(conversation, "fine", "still here"))
    await device.wait(lambda d: d.of_type("send_ok"))
    assert device.of_type("send_ok")[0]["message"]["seq"] == 1
    await pong_after_a_pause(device, realchat.settings.gateway.max_frames_per_s)
    await device.close()


async def test_a_frame_above_the_size_limit_closes_with_1009(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    limit = realchat.settings.gateway.max_frame_bytes
    alice = await register(http, base, "alice")
    device = await connect(http, base, alice)

    def ping_of(size: int) -> str:
        frame = json.dumps({"type": "ping", "padding": ""})
        return frame[:-2] + "x" * (size - len(frame)) + '"}'

    # A frame of exactly the limit is accepted; one byte more closes the connection.
    assert len(ping_of(limit).encode()) == limit
    await device.ws.send_str(ping_of(limit))
    await device.wait(lambda d: d.of_type("pong"))
    await device.ws.send_str(ping_of(limit + 1))
    assert await wait_closed(device) == 1009
    await device.close()


async def test_a_frame_flood_gets_rate_limited_errors_then_close_1008_and_the_gateway_lives_on(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    per_second = int(realchat.settings.gateway.max_frames_per_s)
    alice = await register(http, base, "alice")
    device = await connect(http, base, alice)

    # A burst somewhat above the limit: the excess is refused, the connection stays.
    burst = per_second + 30
    for _ in range(burst):
        await device.send({"type": "ping"})
    await device.wait(lambda d: len(replies(d)) >= burst)
    kinds = [(f["type"], f.get("code")) for f in replies(device)]
    assert set(kinds) == {("pong", None), ("error", "rate_limited")}, kinds
    assert kinds.count(("pong", None)) >= per_second
    await pong_after_a_pause(device, per_second)

    # Hundreds at once: cut off for the flood (possibly before the client is done sending).
    with contextlib.suppress(ConnectionResetError):
        for _ in range(10 * per_second):
            await device.send({"type": "ping"})
    assert await wait_closed(device) == 1008, (device.ws.exception(), device.frames[-3:])
    await device.close()

    pid = realchat.services.running_pid("gateway")
    assert pid is not None, "the gateway process died"
    fresh = await connect(http, base, alice)
    await fresh.send({"type": "ping"})
    await fresh.wait(lambda d: d.of_type("pong"))
    await fresh.close()
    assert realchat.services.running_pid("gateway") == pid


# -- REST ------------------------------------------------------------------------------------------


async def test_rest_refuses_bad_bodies_and_parameters_with_json_errors(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice = await register(http, base, "alice")
    conversation = await create_conversation(http, base, alice)
    messages = f"{base}/v1/conversations/{conversation}/messages"
    json_type = {**alice.auth, "Content-Type": "application/json"}

    async def post_raw(url: str, data: bytes | str) -> tuple[int, Any]:
        return await call(http, "POST", url, data=data, headers=json_type)

    for body in (
        "not json",
        b"\xff\xfe{}",
        '{"client_msg_id": "a", "content": "x"',
        "[" * 20_000,  # nested beyond what a parser recurses into
        '{"client_msg_id": "a", "content": "x", "n": ' + "1" * 5000 + "}",  # int too long
        "[1, 2]",
        '"a string"',
        "",
    ):
        assert_error(await post_raw(messages, body), 400, "invalid_json")

    def send(body: dict[str, Any]) -> Any:
        return call(http, "POST", messages, json=body, headers=alice.auth)

    for body, code in (
        ({"client_msg_id": 5, "content": "x"}, "invalid_client_msg_id"),
        ({"client_msg_id": "", "content": "x"}, "invalid_client_msg_id"),
        ({"client_msg_id": "i" * 65, "content": "x"}, "invalid_client_msg_id"),
        ({"content": "x"}, "invalid_client_msg_id"),
        ({"client_msg_id": "a", "content": ""}, "invalid_content"),
        ({"client_msg_id": "a", "content": "x" * 4001}, "invalid_content"),
        ({"client_msg_id": "a", "content": None}, "invalid_content"),
        ({"client_msg_id": "a", "content": ["x"]}, "invalid_content"),
        ({"client_msg_id": "a", "content": "nul \x00 inside"}, "invalid_content"),
    ):
        assert_error(await send(body), 422, code)
    # 4000 characters is the limit in characters, not bytes.
    status, message = await send({"client_msg_id": "emoji", "content": "\U0001f600" * 4000})
    assert status == 201, message
    assert message["seq"] == 1

    big = json.dumps({"client_msg_id": "big", "content": "x" * (64 * 1024)})
    assert_error(await post_raw(messages, big), 413, "request_too_large")

    conversations = f"{base}/v1/conversations"
    members = f"{base}/v1/conversations/{conversation}/members"
    for url, body, code in (
        (conversations, {"member_ids": "everyone"}, "invalid_member_ids"),
        (conversations, {"member_ids": ["not-a-uuid"]}, "invalid_member_ids"),
        (conversations, {"member_ids": [1]}, "invalid_member_ids"),
        (conversations, {"member_ids": ["x", None]}, "invalid_member_ids"),
        (conversations, {"member_ids": [], "title": 5}, "invalid_title"),
        (conversations, {"member_ids": [], "title": "t" * 201}, "invalid_title"),
        (members, {"user_ids": []}, "invalid_user_ids"),
        (members, {"user_ids": "x"}, "invalid_user_ids"),
        (members, {"user_ids": ["not-a-uuid"]}, "invalid_user_ids"),
        (members, {"user_ids": [1]}, "invalid_user_ids"),
        (members, {}, "invalid_user_ids"),
    ):
        assert_error(await call(http, "POST", url, json=body, headers=alice.auth), 422, code)

    for query, code in (
        ("limit=0", "invalid_limit"),
        ("limit=501", "invalid_limit"),
        ("limit=-1", "invalid_limit"),
        ("limit=ten", "invalid_limit"),
        ("limit=", "invalid_limit"),
        ("after_seq=-1", "invalid_after_seq"),
        ("after_seq=x", "invalid_after_seq"),
        (f"after_seq={2**64}", "invalid_after_seq"),
    ):
        assert_error(await call(http, "GET", f"{messages}?{query}", headers=alice.auth), 422, code)
    for limit in (1, 500):
        status, page = await call(http, "GET", f"{messages}?limit={limit}", headers=alice.auth)
        assert status == 200, page
        assert [m["seq"] for m in page["messages"]] == [1]

    for method, path, status, code in (
        ("GET", "/v1/nope", 404, "not_found"),
        ("GET", "/nope", 404, "not_found"),
        ("POST", "/v1/conversations/x/y/z", 404, "not_found"),
        ("GET", "/v1/ws/extra", 404, "not_found"),
        ("DELETE", "/v1/conversations", 405, "method_not_allowed"),
        ("GET", "/v1/ws", 400, "websocket_upgrade_required"),
        ("GET", f"/v1/ws?token={alice.token}", 400, "websocket_upgrade_required"),
    ):
        assert_error(await call(http, method, f"{base}{path}", headers=alice.auth), status, code)
    # A 405 says which methods the path takes (RFC 9110).
    async with http.delete(f"{base}/v1/conversations", headers=alice.auth) as refused:
        assert refused.status == 405
        assert {"GET", "POST"} <= {m.strip() for m in refused.headers["Allow"].split(",")}
    # A path id that is not a UUID names no conversation.
    assert_error(
        await call(http, "GET", f"{base}/v1/conversations/nope/messages", headers=alice.auth),
        404,
        "conversation_not_found",
    )


async def test_rest_send_is_idempotent_per_client_msg_id(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    conversation = await create_conversation(http, base, alice, bob)
    other = await create_conversation(http, base, alice)
    url = f"{base}/v1/conversations/{conversation}/messages"
    body = {"client_msg_id": "once", "content": "hello"}

    status, first = await call(http, "POST", url, json=body, headers=alice.auth)
    assert status == 201, first
    status, again = await call(http, "POST", url, json=body, headers=alice.auth)
    assert (status, again) == (200, first)
    assert_error(
        await call(http, "POST", url, json={**body, "content": "changed"}, headers=alice.auth),
        409,
        "idempotency_conflict",
    )
    assert_error(
        await call(
            http, "POST", f"{base}/v1/conversations/{other}/messages", json=body, headers=alice.auth
        ),
        409,
        "idempotency_conflict",
    )
    # The key is the sender's: another member may use the same client_msg_id.
    status, bobs = await call(http, "POST", url, json=body, headers=bob.auth)
    assert status == 201, bobs
    assert (bobs["seq"], bobs["sender_id"]) == (2, bob.user_id)

    status, history = await call(http, "GET", url, headers=alice.auth)
    assert status == 200
    assert [(m["seq"], m["message_id"]) for m in history["messages"]] == [
        (1, first["message_id"]),
        (2, bobs["message_id"]),
    ]
    assert history["last_seq"] == 2


async def test_websocket_send_is_idempotent_per_client_msg_id_and_shares_the_key_with_rest(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    base = realchat.base_url
    alice, bob = await register(http, base, "alice"), await register(http, base, "bob")
    conversation = await create_conversation(http, base, alice, bob)
    device = await connect(http, base, alice)
    listener = await connect(http, base, bob)
    send = {"type": "send", "conversation_id": conversation, "client_msg_id": "k-1"}

    await device.send({**send, "content": "hello"})
    await device.wait(lambda d: len(d.of_type("send_ok")) == 1)
    await device.send({**send, "content": "hello"})  # a retry: same id, same content
    await device.wait(lambda d: len(d.of_type("send_ok")) == 2)
    first, again = device.of_type("send_ok")
    assert first["client_msg_id"] == again["client_msg_id"] == "k-1"
    assert again["message"] == first["message"]
    assert first["message"]["seq"] == 1

    await device.send({**send, "content": "changed"})
    await device.wait(lambda d: d.of_type("error"))
    [conflict] = device.of_type("error")
    assert (conflict["code"], conflict["client_msg_id"]) == ("idempotency_conflict", "k-1")

    # The key is the sender's whatever the transport: the REST replay is the same message, 200.
    url = f"{base}/v1/conversations/{conversation}/messages"
    replay = {"client_msg_id": "k-1", "content": "hello"}
    status, message = await call(http, "POST", url, json=replay, headers=alice.auth)
    assert (status, message) == (200, first["message"])

    # One message was stored and delivered, once.
    await device.send({**send, "client_msg_id": "k-2", "content": "next"})
    await listener.wait(lambda d: d.seqs(conversation)[-1:] == [2])
    assert listener.seqs(conversation) == [1, 2]
    status, history = await call(http, "GET", url, headers=alice.auth)
    assert [m["message_id"] for m in history["messages"]][:1] == [first["message"]["message_id"]]
    assert history["last_seq"] == 2
    await device.close()
    await listener.close()


# -- OpenAPI ---------------------------------------------------------------------------------------

#: Every REST route of the contract (api-v1), with its path parameters.
CONTRACT_ROUTES = {
    ("post", "/v1/users"),
    ("post", "/v1/tokens"),
    ("get", "/v1/users/by-username/{username}"),
    ("post", "/v1/conversations"),
    ("get", "/v1/conversations"),
    ("post", "/v1/conversations/{conversation_id}/members"),
    ("get", "/v1/conversations/{conversation_id}/messages"),
    ("post", "/v1/conversations/{conversation_id}/messages"),
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"external $ref {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict), f"unresolvable $ref {ref}"
        assert part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


async def test_openapi_document_is_openapi_3_1_and_lists_every_contract_route(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    status, document = await call(http, "GET", f"{realchat.base_url}/v1/openapi.json")
    assert status == 200
    assert isinstance(document, dict)
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    assert document["info"]["title"]
    assert document["info"]["version"]
    schemes = document["components"]["securitySchemes"]

    served = set()
    for path, item in document["paths"].items():
        assert path.startswith("/")
        templated = set(re.findall(r"{([^}]+)}", path))
        for method, operation in item.items():
            assert method in HTTP_METHODS, f"{path}: {method}"
            served.add((method, path))
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == templated, f"{method} {path}: path parameters {declared}"
            for p in operation.get("parameters", []):
                assert p["in"] in {"path", "query", "header", "cookie"}
                assert p["in"] != "path" or p["required"] is True
            assert operation["responses"], f"{method} {path} has no responses"
            for code, response in operation["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d|[1-5]XX|default", code), code
                assert isinstance(response["description"], str)
            for requirement in operation.get("security", []):
                assert set(requirement) <= set(schemes)
    assert served >= CONTRACT_ROUTES, f"missing: {CONTRACT_ROUTES - served}"
    for ref in _refs(document):
        _resolve(document, ref)

    # The bodies say what the contract says.
    schemas = document["components"]["schemas"]
    send_operation = document["paths"]["/v1/conversations/{conversation_id}/messages"]["post"]
    send_schema = _resolve(
        document, send_operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    )
    assert set(send_schema["required"]) == {"client_msg_id", "content"}
    props = send_schema["properties"]
    assert (props["client_msg_id"]["minLength"], props["client_msg_id"]["maxLength"]) == (1, 64)
    assert (props["content"]["minLength"], props["content"]["maxLength"]) == (1, 4000)
    assert {"201", "200", "409", "422", "401"} <= set(send_operation["responses"])
    message = _resolve(
        document,
        send_operation["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
    )
    assert set(message["required"]) == {
        "message_id", "conversation_id", "seq", "sender_id", "content", "created_at",
    }  # fmt: skip
    # Extensions (edits and deletes), optional: a message never changed leaves them out.
    assert set(message["properties"]) - set(message["required"]) == {
        "version", "edited_at", "deleted",
    }  # fmt: skip
    error = schemas["ErrorBody"]
    assert _resolve(document, error["properties"]["error"]["$ref"])["required"] == [
        "code",
        "message",
    ]
    # Only account creation and login go without a token.
    for method, path in CONTRACT_ROUTES:
        operation = document["paths"][path][method]
        public = path in ("/v1/users", "/v1/tokens")
        assert bool(operation.get("security")) is not public, f"{method} {path}"
    for name in ("conversation_id", "message_id", "sender_id"):
        assert message["properties"][name]["type"] == "string"
