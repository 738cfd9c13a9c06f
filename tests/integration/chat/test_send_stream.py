"""SendMessages: many sends over one gRPC stream, each with SendMessage's own outcome."""

from __future__ import annotations

import uuid

import asyncpg
import grpc
import pytest

from realchat.chat.service import ChatService
from realchat.chat.v1 import chat_pb2 as pb
from realchat.chat.v1 import chat_pb2_grpc
from tests.integration.chat.conftest import as_user
from tests.support.databases import new_users

pytestmark = pytest.mark.asyncio(loop_scope="session")


def item(request_id: int, conversation: str, key: str, content: str) -> pb.SendMessagesRequest:
    send = pb.SendMessageRequest(conversation_id=conversation, client_msg_id=key, content=content)
    return pb.SendMessagesRequest(request_id=request_id, send=send)


async def test_each_streamed_send_gets_its_own_outcome(
    service: ChatService, channel: grpc.aio.Channel, pool: asyncpg.Pool
) -> None:
    alice, bob = await new_users(pool, 2)
    room = str((await service.create_conversation(alice, [str(bob)], "")).conversation_id)
    elsewhere = str((await service.create_conversation(bob, [], "")).conversation_id)
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    requests = [
        item(1, room, "a", "first"),
        item(2, elsewhere, "b", "not a member there"),
        item(3, room, "a", "first"),  # a replay
        item(4, room, "a", "other content"),  # a conflict
        item(5, "not-a-uuid", "c", "x"),
        *(item(10 + n, room, f"k{n}", f"m{n}") for n in range(50)),
    ]
    call = stub.SendMessages(iter(requests), metadata=as_user(alice))
    results = {r.request_id: r async for r in call}
    assert await call.code() == grpc.StatusCode.OK
    assert set(results) == {r.request_id for r in requests}
    first, replay = results[1].sent, results[3].sent
    assert first.created
    assert not replay.created
    assert replay.message == first.message
    errors = {i: results[i].error for i in (2, 4, 5)}
    assert errors[2].status == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert (errors[2].code, errors[4].code) == ("not_a_member", "idempotency_conflict")
    assert errors[5].code == "invalid_conversation_id"
    seqs = sorted(results[10 + n].sent.message.seq for n in range(50))
    assert seqs == list(range(2, 52)), "gapless after the first message"


async def test_a_stream_without_credentials_is_refused(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    call = stub.SendMessages(iter([item(1, str(uuid.uuid4()), "k", "x")]))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in call:
            pass
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
