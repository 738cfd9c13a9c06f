"""The chat gRPC API as callers see it: status codes, error codes, who the caller is."""

from __future__ import annotations

import uuid

import asyncpg
import grpc
import pytest

from realchat.chat.rpc import ERROR_CODE_KEY
from realchat.chat.v1 import chat_pb2 as pb
from realchat.chat.v1 import chat_pb2_grpc
from tests.integration.chat.conftest import as_user
from tests.support.databases import new_users

pytestmark = pytest.mark.asyncio(loop_scope="session")


def error_code(error: grpc.aio.AioRpcError) -> str | None:
    for key, value in error.trailing_metadata() or ():
        if key == ERROR_CODE_KEY:
            return str(value)
    return None


async def test_send_replay_and_history_over_grpc(
    channel: grpc.aio.Channel, pool: asyncpg.Pool
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    alice, bob = await new_users(pool, 2)
    conversation = await stub.CreateConversation(
        pb.CreateConversationRequest(member_ids=[str(bob)], title="pair"), metadata=as_user(alice)
    )
    assert list(conversation.member_ids) == [str(alice), str(bob)]
    request = pb.SendMessageRequest(
        conversation_id=conversation.conversation_id, client_msg_id="c1", content="hi"
    )
    first = await stub.SendMessage(request, metadata=as_user(alice))
    again = await stub.SendMessage(request, metadata=as_user(alice))
    assert first.created
    assert not again.created
    assert again.message == first.message
    assert first.message.seq == 1
    assert first.message.sender_id == str(alice)
    history = await stub.GetHistory(
        pb.GetHistoryRequest(conversation_id=conversation.conversation_id),
        metadata=as_user(bob),
    )
    assert [m.message_id for m in history.messages] == [first.message.message_id]
    assert history.last_seq == 1
    ack = await stub.Ack(
        pb.AckRequest(conversation_id=conversation.conversation_id, seq=1), metadata=as_user(bob)
    )
    assert ack.acked_seq == 1
    listed = await stub.ListConversations(pb.ListConversationsRequest(), metadata=as_user(bob))
    assert [c.conversation_id for c in listed.conversations] == [conversation.conversation_id]
    positions = await stub.ListPositions(pb.ListPositionsRequest(), metadata=as_user(bob))
    assert [(p.conversation_id, p.acked_seq, p.last_seq) for p in positions.positions] == [
        (conversation.conversation_id, 1, 1)
    ]
    assert positions.next_page_token == ""


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ((), "missing_credentials"),
        ((("authorization", "Bearer wrong-token-of-some-length"),), "invalid_credentials"),
        (None, "missing_acting_user"),
    ],
)
async def test_calls_without_valid_credentials_are_unauthenticated(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] | None, code: str
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    if metadata is None:  # the right token, but no acting user
        metadata = (as_user(uuid.uuid4())[0],)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.ListConversations(pb.ListConversationsRequest(), metadata=metadata)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_code(error.value) == code


async def test_errors_map_to_distinct_status_codes(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    alice, outsider = uuid.uuid4(), uuid.uuid4()
    conversation = await stub.CreateConversation(
        pb.CreateConversationRequest(), metadata=as_user(alice)
    )
    cid = conversation.conversation_id
    await stub.SendMessage(
        pb.SendMessageRequest(conversation_id=cid, client_msg_id="k", content="a"),
        metadata=as_user(alice),
    )
    cases = [
        (
            pb.SendMessageRequest(conversation_id=cid, client_msg_id="k", content="b"),
            alice,
            grpc.StatusCode.ALREADY_EXISTS,
            "idempotency_conflict",
        ),
        (
            pb.SendMessageRequest(conversation_id=cid, client_msg_id="k2", content=""),
            alice,
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_content",
        ),
        (
            pb.SendMessageRequest(conversation_id=cid, client_msg_id="k3", content="x"),
            outsider,
            grpc.StatusCode.PERMISSION_DENIED,
            "not_a_member",
        ),
        (
            pb.SendMessageRequest(
                conversation_id=str(uuid.uuid4()), client_msg_id="k4", content="x"
            ),
            alice,
            grpc.StatusCode.NOT_FOUND,
            "conversation_not_found",
        ),
    ]
    for request, caller, status, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.SendMessage(request, metadata=as_user(caller))
        assert (error.value.code(), error_code(error.value)) == (status, code)
    # The acting user comes from metadata only: nothing in a request can name another sender.
    assert "sender_id" not in pb.SendMessageRequest.DESCRIPTOR.fields_by_name
