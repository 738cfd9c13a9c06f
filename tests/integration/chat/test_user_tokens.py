"""Users calling the chat service with their own access token (a JWT from the auth service),
beside trusted callers with the internal credential, on one in-process gRPC server."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from realchat.auth.tokens import TokenIssuer, TokenVerifier
from realchat.chat.api import ChatServicer
from realchat.chat.identity import FirstOf, InternalCredential, TokenAuthenticator
from realchat.chat.send_limit import DirectSendLimit
from realchat.chat.service import ChatService
from realchat.chat.store import ChatStore
from realchat.chat.v1 import chat_pb2 as pb
from realchat.chat.v1 import chat_pb2_grpc
from realchat.gateway.ratelimit import SendLimiter
from realchat.stack.supervisor import Stack
from realchat.storage.redis import redis_client
from tests.integration.chat.conftest import INTERNAL_TOKEN, OUTBOX_SHARDS, as_user
from tests.integration.chat.test_grpc_api import error_code
from tests.support.databases import new_users

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY = Ed25519PrivateKey.generate()
ISSUER = TokenIssuer(KEY, "k1", "realchat", "realchat", 600)


def with_token(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


#: Sends per user per second in these tests (the per-user limit, in the test stack's Redis).
SENDS_PER_S = 3


@pytest_asyncio.fixture(loop_scope="session")
async def token_stub(
    service: ChatService, pool: asyncpg.Pool, stack: Stack
) -> AsyncIterator[chat_pb2_grpc.ChatServiceStub]:
    """The real servicer accepting the internal credential and user tokens (refused once
    revoked, their sends limited), as `serve()` wires it when `REALCHAT_AUTH__PUBLIC_KEY_FILE`
    is set."""
    verifier = TokenVerifier({"k1": KEY.public_key()}, "realchat", "realchat")
    store = ChatStore(pool, OUTBOX_SHARDS)
    authenticator = FirstOf(
        InternalCredential(INTERNAL_TOKEN), TokenAuthenticator(verifier, store.token_version)
    )
    redis = redis_client(stack.redis.url)
    limit = DirectSendLimit(SendLimiter(redis, SENDS_PER_S), INTERNAL_TOKEN)
    server = grpc.aio.server()
    chat_pb2_grpc.add_ChatServiceServicer_to_server(
        ChatServicer(service, authenticator, send_limit=limit), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield chat_pb2_grpc.ChatServiceStub(channel)
    finally:
        await server.stop(grace=None)
        await redis.aclose()


async def test_a_revoked_user_token_is_refused(
    token_stub: chat_pb2_grpc.ChatServiceStub, pool: asyncpg.Pool
) -> None:
    (alice,) = await new_users(pool, 1)
    old, _ = ISSUER.issue(alice, version=0)
    await pool.execute("UPDATE users SET token_version = 1 WHERE id = $1", alice)  # a logout
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await token_stub.ListConversations(pb.ListConversationsRequest(), metadata=with_token(old))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    fresh, _ = ISSUER.issue(alice, version=1)
    await token_stub.ListConversations(pb.ListConversationsRequest(), metadata=with_token(fresh))
    stranger, _ = ISSUER.issue(uuid.uuid4())  # no such account
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await token_stub.ListConversations(
            pb.ListConversationsRequest(), metadata=with_token(stranger)
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def send_outcome(
    stub: chat_pb2_grpc.ChatServiceStub,
    request: pb.SendMessageRequest,
    metadata: tuple[tuple[str, str], ...],
) -> tuple[grpc.StatusCode, str | None]:
    try:
        await stub.SendMessage(request, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), error_code(exc)
    return grpc.StatusCode.OK, None


async def test_sends_with_a_user_token_are_held_to_the_per_user_limit(
    token_stub: chat_pb2_grpc.ChatServiceStub, pool: asyncpg.Pool
) -> None:
    """Going around the gateway does not go around its per-user limit; the gateway's own calls
    (internal credential) are not counted twice."""
    alice, bob = await new_users(pool, 2)
    token, _ = ISSUER.issue(alice)
    room = await token_stub.CreateConversation(
        pb.CreateConversationRequest(member_ids=[str(bob)]), metadata=with_token(token)
    )
    outcomes: list[tuple[grpc.StatusCode, str | None]] = []
    started = time.monotonic()
    for n in range(4 * SENDS_PER_S):
        request = pb.SendMessageRequest(
            conversation_id=room.conversation_id, client_msg_id=f"direct-{n}", content="x"
        )
        outcomes.append(await send_outcome(token_stub, request, with_token(token)))
    windows = math.ceil(time.monotonic() - started) + 1  # one-second windows the sends touched
    assert outcomes.count((grpc.StatusCode.OK, None)) <= windows * SENDS_PER_S
    assert set(outcomes) == {
        (grpc.StatusCode.OK, None),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited"),
    }
    stream = token_stub.SendMessages(
        iter(
            [
                pb.SendMessagesRequest(
                    request_id=n,
                    send=pb.SendMessageRequest(
                        conversation_id=room.conversation_id,
                        client_msg_id=f"streamed-{n}",
                        content="x",
                    ),
                )
                for n in range(4 * SENDS_PER_S)
            ]
        ),
        metadata=with_token(token),
    )
    streamed = [r async for r in stream]
    assert any(
        r.WhichOneof("result") == "error" and r.error.code == "rate_limited" for r in streamed
    )
    for n in range(4 * SENDS_PER_S):  # bob through the gateway's credential: not counted here
        await token_stub.SendMessage(
            pb.SendMessageRequest(
                conversation_id=room.conversation_id, client_msg_id=f"gw-{n}", content="y"
            ),
            metadata=as_user(bob),
        )


async def test_a_user_token_acts_as_that_user(
    token_stub: chat_pb2_grpc.ChatServiceStub, pool: asyncpg.Pool
) -> None:
    alice, bob = await new_users(pool, 2)
    alice_token, _ = ISSUER.issue(alice)
    conversation = await token_stub.CreateConversation(
        pb.CreateConversationRequest(member_ids=[str(bob)]), metadata=with_token(alice_token)
    )
    assert list(conversation.member_ids) == [str(alice), str(bob)]
    sent = await token_stub.SendMessage(
        pb.SendMessageRequest(
            conversation_id=conversation.conversation_id, client_msg_id="t1", content="hello"
        ),
        # The token names the user; a header naming someone else changes nothing.
        metadata=(*with_token(alice_token), ("x-realchat-user-id", str(bob))),
    )
    assert sent.message.sender_id == str(alice)
    # The gateway's internal credential keeps working on the same server.
    history = await token_stub.GetHistory(
        pb.GetHistoryRequest(conversation_id=conversation.conversation_id), metadata=as_user(bob)
    )
    assert [m.sender_id for m in history.messages] == [str(alice)]
    listed = await token_stub.ListConversations(
        pb.ListConversationsRequest(), metadata=with_token(ISSUER.issue(bob)[0])
    )
    assert [c.conversation_id for c in listed.conversations] == [conversation.conversation_id]


@pytest.mark.parametrize(
    "token",
    [
        TokenIssuer(KEY, "k1", "realchat", "realchat", 600, clock=lambda: time.time() - 7200).issue(
            uuid.uuid4()
        )[0],
        TokenIssuer(Ed25519PrivateKey.generate(), "k1", "realchat", "realchat", 600).issue(
            uuid.uuid4()
        )[0],
        TokenIssuer(KEY, "k1", "realchat", "another-audience", 600).issue(uuid.uuid4())[0],
        "not-a-token-at-all",
    ],
    ids=["expired", "other-key", "other-audience", "garbage"],
)
async def test_bad_user_tokens_are_unauthenticated(
    token_stub: chat_pb2_grpc.ChatServiceStub, token: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await token_stub.ListConversations(
            pb.ListConversationsRequest(), metadata=with_token(token)
        )
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_code(failure.value) == "invalid_credentials"
