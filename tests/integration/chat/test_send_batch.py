"""SendMessageBatch, and the gateway's client that gathers its sends into it: many users' sends
in one call, each with SendMessage's own outcome."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import grpc
import pytest

from realchat.chat.metrics import GRPC_REQUESTS
from realchat.chat.rpc import MAX_BATCH_SENDS, internal_only_metadata
from realchat.chat.service import ChatService
from realchat.chat.v1 import chat_pb2 as pb
from realchat.chat.v1 import chat_pb2_grpc
from realchat.gateway.chat_client import ChatCallError, ChatClient
from tests.integration.chat.conftest import INTERNAL_TOKEN, as_user
from tests.support.databases import new_users

pytestmark = pytest.mark.asyncio(loop_scope="session")


def batched(sender: uuid.UUID, conversation: str, key: str, content: str) -> pb.BatchedSend:
    send = pb.SendMessageRequest(conversation_id=conversation, client_msg_id=key, content=content)
    return pb.BatchedSend(sender_id=str(sender), send=send)


async def call(channel: grpc.aio.Channel, sends: list[pb.BatchedSend]) -> list[pb.SendResult]:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    reply = await stub.SendMessageBatch(
        pb.SendMessageBatchRequest(sends=sends), metadata=internal_only_metadata(INTERNAL_TOKEN)
    )
    return list(reply.results)


async def test_each_batched_send_gets_its_own_outcome_in_request_order(
    service: ChatService, channel: grpc.aio.Channel, pool: asyncpg.Pool
) -> None:
    alice, bob, carol = await new_users(pool, 3)
    room = str((await service.create_conversation(alice, [str(bob)], "")).conversation_id)
    earlier = await service.send_message(bob, room, "earlier", "sent before the batch")
    sends = [
        batched(alice, room, "a", "first"),
        batched(carol, room, "c", "not a member"),
        batched(alice, room, "a", "first"),  # a replay inside the batch
        batched(alice, room, "a", "other content"),  # a conflict inside the batch
        batched(bob, "not-a-uuid", "b", "x"),
        batched(bob, room, "earlier", "sent before the batch"),  # a replay across batches
        batched(bob, room, "empty", ""),
        *(batched((alice, bob)[n % 2], room, f"k{n}", f"m{n}") for n in range(40)),
    ]
    results = await call(channel, sends)
    assert len(results) == len(sends)
    first, replay, old = results[0].sent, results[2].sent, results[5].sent
    assert (first.created, replay.created, old.created) == (True, False, False)
    assert replay.message == first.message
    assert old.message.message_id == str(earlier.message.message_id)
    errors = {i: results[i].error for i in (1, 3, 4, 6)}
    assert errors[1].status == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert [errors[i].code for i in (1, 3, 4, 6)] == [
        "not_a_member",
        "idempotency_conflict",
        "invalid_conversation_id",
        "invalid_content",
    ]
    seqs = [r.sent.message.seq for r in results[7:]]
    assert seqs == list(range(3, 43)), "gapless, numbered in request order"
    assert [r.sent.message.sender_id for r in results[7:9]] == [str(alice), str(bob)]


async def test_a_batch_takes_the_internal_credential_only(
    service: ChatService, channel: grpc.aio.Channel
) -> None:
    alice = uuid.uuid4()
    room = str((await service.create_conversation(alice, [], "")).conversation_id)
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    request = pb.SendMessageBatchRequest(sends=[batched(alice, room, "k", "x")])
    for metadata in ((), (("authorization", "Bearer not-the-internal-token-at-all"),)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SendMessageBatch(request, metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    history = await stub.GetHistory(
        pb.GetHistoryRequest(conversation_id=room), metadata=as_user(alice)
    )
    assert list(history.messages) == [], "a refused call wrote nothing"


async def test_a_malformed_sender_or_an_oversized_batch_fails_the_call_and_writes_nothing(
    service: ChatService, channel: grpc.aio.Channel, pool: asyncpg.Pool
) -> None:
    alice = uuid.uuid4()
    room = str((await service.create_conversation(alice, [], "")).conversation_id)
    good = batched(alice, room, "k", "x")
    bad_sender = pb.BatchedSend(sender_id="nobody", send=good.send)
    too_many = [batched(alice, room, f"k{n}", "x") for n in range(MAX_BATCH_SENDS + 1)]
    for sends, code in (([good, bad_sender], "invalid_sender_id"), (too_many, "too_many_sends")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(channel, sends)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ("realchat-error-code", code) in tuple(refused.value.trailing_metadata() or ())
    stored = await pool.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", room)
    assert stored == 0


def _batch_calls() -> float:
    return GRPC_REQUESTS.labels(method="SendMessageBatch", code="OK")._value.get()


async def test_the_gateway_client_gathers_concurrent_sends_into_fewer_calls(
    service: ChatService, channel: grpc.aio.Channel, pool: asyncpg.Pool
) -> None:
    users = await new_users(pool, 20)
    room = str(
        (
            await service.create_conversation(users[0], [str(u) for u in users[1:]], "")
        ).conversation_id
    )
    outsider_room = str((await service.create_conversation(uuid.uuid4(), [], "")).conversation_id)
    client = ChatClient(channel, INTERNAL_TOKEN)
    calls_before = _batch_calls()

    async def send(n: int) -> int:
        sent = await client.send(users[n % 20], room, f"g{n}", f"message {n}")
        return sent.message.seq

    seqs = await asyncio.gather(*(send(n) for n in range(200)))
    with pytest.raises(ChatCallError) as refused:
        await client.send(users[0], outsider_room, "x", "not mine")
    calls = _batch_calls() - calls_before
    assert sorted(seqs) == list(range(1, 201))
    assert refused.value.code == "not_a_member"
    assert refused.value.http_status == 403
    assert calls < 100, f"{calls:g} calls for 201 sends: the sends were not gathered"
    replay = await client.send(users[3], room, "g3", "message 3")
    assert (replay.created, replay.message.seq) == (False, seqs[3])


async def test_a_call_stuck_on_a_locked_conversation_does_not_hold_up_the_next_sends(
    service: ChatService, channel: grpc.aio.Channel, pool: asyncpg.Pool
) -> None:
    """While a call is in flight the client's next sends wait for it, but not for long: a call
    whose commit queues behind another writer's row lock lets the others go in a second call."""
    users = await new_users(pool, 2)
    hot, other = [
        str((await service.create_conversation(users[0], [str(users[1])], t)).conversation_id)
        for t in ("hot", "other")
    ]
    client = ChatClient(channel, INTERNAL_TOKEN)
    async with pool.acquire() as holder, holder.transaction():
        # Another writer holds the hot conversation's counter row.
        await holder.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", uuid.UUID(hot))
        stuck = asyncio.create_task(client.send(users[0], hot, "h1", "waits for the lock"))
        await asyncio.sleep(0)  # the task runs up to its call: one call in flight
        others = [client.send(users[1], other, f"o{n}", f"other {n}") for n in range(5)]
        sent = await asyncio.wait_for(asyncio.gather(*others), timeout=10)
        assert [s.message.seq for s in sent] == [1, 2, 3, 4, 5]
        assert not stuck.done()
    assert (await stuck).message.seq == 1
