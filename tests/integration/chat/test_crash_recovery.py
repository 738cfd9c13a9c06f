"""Crash recovery of the chat write path and the outbox publisher, on the real PostgreSQL and Kafka
of the test stack, with the real `realchat` processes SIGKILLed mid-work.

- A publisher killed after Kafka acknowledged a batch but before it marked the rows published
  loses nothing: the rows stay pending and the next publisher re-sends them (at least once).
- A chat service killed with sends in flight leaves every send all-or-nothing: each acknowledged
  send is committed with its outbox event, the others are wholly absent or wholly present, seqs
  stay gapless; clients retrying the unanswered sends get the committed ones back as replays and
  the others written once; the publisher then carries every message to Kafka, in order.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path

import asyncpg
import grpc
import pytest

from realchat.chat.rpc import internal_metadata
from realchat.chat.service import ChatService
from realchat.chat.store import ChatStore
from realchat.chat.v1 import chat_pb2 as pb
from realchat.chat.v1 import chat_pb2_grpc
from realchat.events.models import MessageCreated, decode
from realchat.events.topics import MESSAGE_CREATED
from realchat.gateway.chat_client import ChatCallError, ChatClient
from realchat.outbox.recipients import with_recipients
from realchat.stack.supervisor import Stack
from tests.support.databases import fresh_database, new_users, utc_pool
from tests.support.outbox import (
    Expected,
    check_delivery,
    count,
    covers,
    eventually_async,
    ours,
    unpublished,
)
from tests.support.processes import (
    RealchatProcess,
    free_ports,
    read_until,
    running_realchat,
    service_env,
)
from tests.support.topics import TopicTail

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

OUTBOX_SHARDS = 8


async def publish_everything(stack: Stack, dsn: str, pool: asyncpg.Pool, logs: Path) -> None:
    """Run a normal `realchat outbox-publisher` until the outbox is drained; stop it cleanly."""
    _, ops_port = free_ports()
    env = service_env(stack, dsn, OUTBOX__OPS_PORT=str(ops_port))
    async with running_realchat("outbox-publisher", env, logs, ops_port) as publisher:
        pending = -1

        async def drained() -> bool:
            nonlocal pending
            pending = await unpublished(pool)
            return pending == 0

        assert await eventually_async(drained, timeout_s=60), (
            f"{pending} outbox rows still unpublished\n{publisher.tail()}"
        )
        assert await publisher.stop() == 0, publisher.tail()


async def test_publisher_killed_between_broker_ack_and_mark_resends_everything(
    stack: Stack, tmp_path: Path
) -> None:
    conversations, per_conversation = 3, 20
    total = conversations * per_conversation
    # Marked before anything is published: whatever this test's publishers send is after it.
    tail = TopicTail(stack.kafka.bootstrap_servers, MESSAGE_CREATED)
    try:
        async with fresh_database(stack.postgres) as dsn:
            pool = await utc_pool(dsn)
            try:
                service = ChatService(ChatStore(pool, OUTBOX_SHARDS))
                expected: Expected = {}
                for c in range(conversations):
                    users = await new_users(pool, 3)
                    record = await service.create_conversation(
                        users[0], [str(u) for u in users[1:]], f"crash-{c}"
                    )
                    conversation = record.conversation_id
                    expected[conversation] = {}
                    for i in range(per_conversation):
                        sent = await service.send_message(
                            users[i % 3], str(conversation), f"c{c}-m{i}", f"message {i}"
                        )
                        expected[conversation][sent.message.seq] = sent.message.message_id
                assert await unpublished(pool) == total

                # 1. The faulty publisher: SIGKILLs itself once Kafka acknowledged a batch.
                _, ops_port = free_ports()
                faulty_env = service_env(
                    stack,
                    dsn,
                    OUTBOX__OPS_PORT=str(ops_port),
                    FAULTS__KILL_PUBLISHER_AFTER_ACK="true",
                )
                async with running_realchat(
                    "outbox-publisher", faulty_env, tmp_path / "logs", ops_port, ready=False
                ) as faulty:
                    code = await faulty.wait_exit(60)
                    assert code == -signal.SIGKILL, f"exit status {code}\n{faulty.tail()}"
                    assert "fault injection: SIGKILL after broker ack" in faulty.log_text()

                # Nothing was marked: every row is still pending, none has even failed.
                assert await unpublished(pool) == total
                assert await count(pool, "SELECT count(*) FROM outbox WHERE attempts > 0") == 0

                # ... yet the acknowledged batch did reach Kafka before the kill.
                received = await read_until(
                    tail, lambda r: ours(r, set(expected)).total > 0, timeout_s=20
                )
                before_restart = ours(received, set(expected))
                first_run = before_restart.seen()
                assert first_run, "the killed publisher's acknowledged batch is not in Kafka"
                assert not before_restart.repeated()

                # 2. A normal publisher picks the rows up and marks every one.
                await publish_everything(stack, dsn, pool, tmp_path / "logs")
                published = await count(
                    pool, "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"
                )
                assert published == total
                assert await count(pool, "SELECT count(*) FROM dead_letters") == 0
            finally:
                await pool.close()

        # Every message at least once, in seq order per conversation, repeats identical; and
        # the first run's batch was indeed re-sent: the hook fired after the broker's ack.
        received = await read_until(
            tail,
            lambda r: (
                covers(r, expected) and ours(r, set(expected)).total >= total + len(first_run)
            ),
            timeout_s=60,
        )
        delivery = check_delivery(received, expected)
        assert first_run <= delivery.repeated(), (
            f"{len(first_run - delivery.repeated())} events of the killed run were not re-sent"
        )
        print(f"{len(first_run)} events acknowledged before the kill, all re-sent")
    finally:
        tail.close()


SENDS = 50
#: The chat service is SIGKILLed the moment this many sends got their reply. Through the
#: gateway's client the first two sends go alone and the other 48 in one call, started as soon
#: as the first call ended: the first reply is the moment that call is in flight.
KILL_AFTER_REPLIES = {"SendMessage": 10, "SendMessageBatch": 1}


def _sender(users: list[uuid.UUID], i: int) -> uuid.UUID:
    return users[i % len(users)]


def _request(conversation_id: str, i: int) -> pb.SendMessageRequest:
    return pb.SendMessageRequest(
        conversation_id=conversation_id, client_msg_id=f"in-flight-{i}", content=f"message {i}"
    )


async def _chat_backends(pool: asyncpg.Pool) -> int:
    """Sessions the chat process still has in this database (PostgreSQL finishes a statement
    whose client died before it notices): only once they are gone is the outcome final."""
    return await count(
        pool,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'realchat-chat'",
    )


async def _send_until_killed(
    chat: RealchatProcess, target: str, token: str, users: list[uuid.UUID], transport: str
) -> tuple[str, dict[int, pb.Message], dict[int, BaseException]]:
    """Create a conversation, fire the sends at once (one SendMessage call each, or through the
    gateway's client, which gathers them into SendMessageBatch calls), SIGKILL the server after
    the `KILL_AFTER_REPLIES`-th reply; return the conversation, and the replies and the failures
    by send number."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        gateway = ChatClient(channel, token, timeout_s=30)
        conversation = await stub.CreateConversation(
            pb.CreateConversationRequest(member_ids=[str(u) for u in users[1:]], title="in flight"),
            metadata=internal_metadata(token, users[0]),
            timeout=10,
        )
        conversation_id = conversation.conversation_id
        replies: dict[int, pb.Message] = {}

        async def send_one(i: int) -> pb.Message:
            request = _request(conversation_id, i)
            if transport == "SendMessageBatch":
                sent = await gateway.send(
                    _sender(users, i), conversation_id, request.client_msg_id, request.content
                )
                assert sent.created
                m = sent.message
                return pb.Message(
                    message_id=m.message_id, seq=m.seq, sender_id=m.sender_id, content=m.content
                )
            response = await stub.SendMessage(
                request, metadata=internal_metadata(token, _sender(users, i)), timeout=30
            )
            assert response.created
            return response.message

        async def send(i: int) -> None:
            replies[i] = await send_one(i)
            if len(replies) == KILL_AFTER_REPLIES[transport]:
                chat.kill(signal.SIGKILL)  # now, before any other reply is looked at

        outcomes = await asyncio.gather(*(send(i) for i in range(SENDS)), return_exceptions=True)
    failures = {i: o for i, o in enumerate(outcomes) if isinstance(o, BaseException)}
    return conversation_id, replies, failures


def _unavailable(error: BaseException) -> bool:
    """How each transport reports a server that went away mid-call."""
    if isinstance(error, ChatCallError):
        return error.http_status == 503 and error.code == "chat_unavailable"
    return isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.UNAVAILABLE


async def _retry(
    target: str, token: str, users: list[uuid.UUID], conversation_id: str, sends: list[int]
) -> dict[int, pb.SendMessageResponse]:
    """What a client does with sends that got no answer: the same request again."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        responses = await asyncio.gather(
            *(
                stub.SendMessage(
                    _request(conversation_id, i),
                    metadata=internal_metadata(token, _sender(users, i)),
                    timeout=30,
                )
                for i in sends
            )
        )
    return dict(zip(sends, responses, strict=True))


async def _committed(
    pool: asyncpg.Pool, conversation: uuid.UUID, members: list[uuid.UUID]
) -> dict[str, asyncpg.Record]:
    """The conversation's messages by client_msg_id, after checking the write path's invariants:
    seqs exactly 1..N, the counter at N, and exactly one outbox event per message (carrying it)
    and none for anything else, in seq order."""
    messages = await pool.fetch(
        "SELECT id, seq, sender_id, content, idempotency_key FROM messages "
        "WHERE conversation_id = $1 ORDER BY seq",
        conversation,
    )
    n = len(messages)
    assert [m["seq"] for m in messages] == list(range(1, n + 1)), "seqs have gaps"
    last_seq = await pool.fetchval("SELECT last_seq FROM conversations WHERE id = $1", conversation)
    assert last_seq == n
    members_json = json.dumps(sorted(str(m) for m in members)).encode()
    events = [
        decode(MESSAGE_CREATED, with_recipients(bytes(row["payload"]), members_json))
        for row in await pool.fetch(
            "SELECT payload FROM outbox WHERE partition_key = $1 ORDER BY id", str(conversation)
        )
    ]
    created = [e for e in events if isinstance(e, MessageCreated)]
    assert len(created) == len(events), "an outbox event of another type"
    assert [e.seq for e in created] == list(range(1, n + 1)), "outbox events out of seq order"
    for message, event in zip(messages, created, strict=True):
        assert event.message_id == message["id"], f"seq {message['seq']}: event of another message"
        assert event.conversation_id == conversation
        assert (event.sender_id, event.content) == (message["sender_id"], message["content"])
    return {m["idempotency_key"]: m for m in messages}


@pytest.mark.parametrize("transport", ["SendMessage", "SendMessageBatch"])
async def test_chat_service_killed_with_sends_in_flight_keeps_every_send_all_or_nothing(
    stack: Stack, tmp_path: Path, transport: str
) -> None:
    token = "crash-test-token-" + uuid.uuid4().hex
    logs = tmp_path / "logs"
    tail = TopicTail(stack.kafka.bootstrap_servers, MESSAGE_CREATED)
    try:
        async with fresh_database(stack.postgres) as dsn:
            pool = await utc_pool(dsn)
            try:
                users = await new_users(pool, 5)

                def chat_env(grpc_port: int, ops_port: int) -> dict[str, str]:
                    return service_env(
                        stack,
                        dsn,
                        CHAT__GRPC_PORT=str(grpc_port),
                        CHAT__OPS_PORT=str(ops_port),
                        CHAT__INTERNAL_TOKEN=token,
                    )

                # 1. Fire the sends; SIGKILL the service while most are in flight.
                grpc_port, ops_port = free_ports()
                async with running_realchat(
                    "chat-service", chat_env(grpc_port, ops_port), logs, ops_port
                ) as chat:
                    conversation_id, replies, failures = await _send_until_killed(
                        chat, f"127.0.0.1:{grpc_port}", token, users, transport
                    )
                    code = await chat.wait_exit(10)
                    assert code == -signal.SIGKILL, f"exit status {code}\n{chat.tail()}"
                assert len(replies) + len(failures) == SENDS
                assert len(replies) >= KILL_AFTER_REPLIES[transport]
                assert failures, "every send was answered before the kill: none was in flight"
                for i, error in failures.items():
                    assert _unavailable(error), f"send {i}: {error!r}"

                # PostgreSQL may still be finishing statements of the dead process: wait.
                async def sessions_gone() -> bool:
                    return await _chat_backends(pool) == 0

                assert await eventually_async(sessions_gone, timeout_s=30), (
                    "the killed chat service's sessions never went away"
                )

                # 2. Every send is all or nothing; every answered one is committed as answered.
                conversation = uuid.UUID(conversation_id)
                committed = await _committed(pool, conversation, users)
                for i, reply in replies.items():
                    row = committed.get(f"in-flight-{i}")
                    assert row is not None, f"send {i} was answered but is not in the database"
                    assert (uuid.UUID(reply.message_id), reply.seq) == (row["id"], row["seq"])
                    assert (reply.content, uuid.UUID(reply.sender_id)) == (
                        row["content"],
                        row["sender_id"],
                    )
                assert set(committed) <= {f"in-flight-{i}" for i in range(SENDS)}
                unanswered_committed = [i for i in failures if f"in-flight-{i}" in committed]
                assert len(committed) == len(replies) + len(unanswered_committed)
                print(
                    f"{len(replies)} answered, {len(failures)} unanswered of which "
                    f"{len(unanswered_committed)} committed"
                )

                # 3. A restarted service answers the clients' retries: the committed ones as
                # replays of what was written, the others as new messages; still gapless.
                grpc_port, ops_port = free_ports()
                async with running_realchat(
                    "chat-service", chat_env(grpc_port, ops_port), logs, ops_port
                ) as chat:
                    retried = await _retry(
                        f"127.0.0.1:{grpc_port}", token, users, conversation_id, sorted(failures)
                    )
                    assert await chat.stop() == 0, chat.tail()
                for i, response in retried.items():
                    earlier = committed.get(f"in-flight-{i}")
                    assert response.created == (earlier is None), f"send {i}"
                    if earlier is not None:
                        assert uuid.UUID(response.message.message_id) == earlier["id"]
                        assert response.message.seq == earlier["seq"]
                final = await _committed(pool, conversation, users)
                assert set(final) == {f"in-flight-{i}" for i in range(SENDS)}
                for i, response in retried.items():
                    assert uuid.UUID(response.message.message_id) == final[f"in-flight-{i}"]["id"]

                # 4. The publisher then carries every message to Kafka, in order.
                await publish_everything(stack, dsn, pool, logs)
            finally:
                await pool.close()

        expected: Expected = {conversation: {m["seq"]: m["id"] for m in final.values()}}
        received = await read_until(tail, lambda r: covers(r, expected), timeout_s=60)
        check_delivery(received, expected)
        assert all(
            expected[conversation][r.seq] == uuid.UUID(r.message_id) for r in replies.values()
        )
    finally:
        tail.close()
