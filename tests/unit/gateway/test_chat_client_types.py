"""The gateway's chat client speaks the contract: what it returns are contract types (never
protobuf messages) and what it raises carries a contract code and status (never a gRPC one)."""

from __future__ import annotations

import inspect
import typing
from datetime import UTC, datetime

import msgspec
from google.protobuf.timestamp_pb2 import Timestamp

from realchat.chat.v1 import chat_pb2 as pb
from realchat.contract.rest import Conversation, UserPresence
from realchat.gateway.chat_client import (
    ChatClient,
    conversation_from_proto,
    presence_from_proto,
)

#: Modules whose types stay behind the boundary.
TRANSPORT = ("realchat.chat.v1", "grpc", "google.protobuf")


def types_in(hint: object) -> list[type]:
    found = [hint] if isinstance(hint, type) else []
    return found + [t for arg in typing.get_args(hint) for t in types_in(arg)]


def test_no_public_method_returns_a_transport_type() -> None:
    methods = [
        (name, member)
        for name, member in inspect.getmembers(ChatClient, inspect.iscoroutinefunction)
        if not name.startswith("_")
    ]
    assert len(methods) > 10
    for name, method in methods:
        returned = types_in(typing.get_type_hints(method)["return"])
        leaked = [t for t in returned if t.__module__.startswith(TRANSPORT)]
        assert not leaked, f"ChatClient.{name} returns {leaked}"


def test_a_conversation_reads_as_the_contract_writes_it() -> None:
    created = Timestamp()
    created.FromDatetime(datetime(2026, 12, 5, 14, 0, 1, 250000, tzinfo=UTC))
    proto = pb.Conversation(
        conversation_id="c", title="", member_ids=["a", "b"], created_at=created,
        last_seq=7, acked_seq=3, unread_count=4,
    )  # fmt: skip
    conversation = conversation_from_proto(proto)
    assert isinstance(conversation, Conversation)
    assert msgspec.json.decode(msgspec.json.encode(conversation)) == {
        "conversation_id": "c",
        "title": None,  # no title
        "member_ids": ["a", "b"],
        "created_at": "2026-12-05T14:00:01.250000Z",
        "last_seq": 7,
        "acked_seq": 3,
        "unread_count": 4,
    }


def test_a_user_never_seen_online_has_no_since() -> None:
    never = presence_from_proto(pb.UserPresence(user_id="u", status="offline"))
    assert never == UserPresence("u", "offline", None)
    since = Timestamp(seconds=1_800_000_000)
    online = presence_from_proto(pb.UserPresence(user_id="u", status="online", since=since))
    assert online.status == "online"
    assert online.since == datetime.fromtimestamp(1_800_000_000, tz=UTC)
