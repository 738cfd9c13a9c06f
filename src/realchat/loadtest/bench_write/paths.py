"""Our paths: the real chat service process over gRPC (batched, unary, streamed) and
`ChatService` in this process, each driven by the same closed loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
from pydantic import SecretStr

from realchat.chat.rpc import internal_metadata
from realchat.chat.service import ChatService
from realchat.chat.store import SESSION_SETTINGS, ChatStore
from realchat.chat.v1 import chat_pb2, chat_pb2_grpc
from realchat.gateway.chat_client import ChatClient
from realchat.loadtest.bench_write.driver import BenchContext, drive
from realchat.loadtest.bench_write.results import BenchError, PathResult
from realchat.loadtest.bench_write.scenarios import CONTENT, Scenario
from realchat.loadtest.ports import free_ports
from realchat.stack import process
from realchat.stack.component import ComponentNotReadyError
from realchat.stack.service import Service
from realchat.storage.pool import create_pool

#: The stack component whose process definition the bench chat server copies.
CHAT_COMPONENT = "chat"
CALL_TIMEOUT_S = 30.0


async def _wait_ready(server: Service, child: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if child.poll() is not None:
            raise BenchError(f"bench chat server exited; {process.failure_report(server.log_path)}")
        try:
            await server.probe()
        except ComponentNotReadyError as exc:
            if time.monotonic() > deadline:
                raise BenchError(f"bench chat server not ready: {exc}") from exc
            await asyncio.sleep(0.2)
        else:
            return


@contextlib.asynccontextmanager
async def bench_chat_server(ctx: BenchContext) -> AsyncIterator[str]:
    """The dev stack's own chat process definition (command, settings), run a second time on the
    bench database and free ports; stopped (SIGTERM, drained) afterwards."""
    chat = next(s for s in ctx.stack.services() if s.name == CHAT_COMPONENT)
    grpc_port, ops_port = free_ports(2)
    server = replace(
        chat,
        name="bench-chat",
        address=f"{ctx.settings.chat.grpc_host}:{grpc_port}",
        ops_url=f"http://{ctx.settings.ops_host}:{ops_port}",
        env={
            **chat.env,
            "REALCHAT_DATABASE__URL": ctx.dsn,
            "REALCHAT_CHAT__GRPC_PORT": str(grpc_port),
            "REALCHAT_CHAT__OPS_PORT": str(ops_port),
        },
    )
    child = process.spawn(server.process_spec())
    ctx.pids["chat"] = child.pid
    try:
        await _wait_ready(server, child, timeout_s=30.0)
        yield server.address
    finally:
        await asyncio.to_thread(
            process.stop, child.pid, sig=server.stop_signal, grace_s=server.stop_grace_s
        )
        await asyncio.to_thread(child.wait, 10)


async def run_grpc(ctx: BenchContext, scenario: Scenario) -> PathResult:
    """The headline path: the gateway's own chat client (`ChatClient.send`), whose concurrent
    sends share SendMessageBatch calls, over one gRPC channel."""
    conversation_ids = ctx.conversation_ids(scenario)
    users = ctx.users
    ctx.pids["generator"] = os.getpid()
    async with bench_chat_server(ctx) as target, grpc.aio.insecure_channel(target) as channel:
        client = ChatClient(channel, ctx.stack.internal_token, timeout_s=CALL_TIMEOUT_S)

        async def send(worker: int, conversation: int) -> None:
            await client.send(users[worker], conversation_ids[conversation], _key(), CONTENT)

        return await drive(ctx, "grpc", scenario, send)


async def run_grpc_unary(ctx: BenchContext, scenario: Scenario) -> PathResult:
    """One SendMessage call per send (how the gateway called the chat service before)."""
    conversation_ids = ctx.conversation_ids(scenario)
    token = ctx.stack.internal_token
    metadata = [internal_metadata(token, user) for user in ctx.users]
    ctx.pids["generator"] = os.getpid()
    async with bench_chat_server(ctx) as target, grpc.aio.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)

        async def send(worker: int, conversation: int) -> None:
            request = chat_pb2.SendMessageRequest(
                conversation_id=conversation_ids[conversation],
                client_msg_id=_key(),
                content=CONTENT,
            )
            await stub.SendMessage(request, metadata=metadata[worker], timeout=CALL_TIMEOUT_S)

        return await drive(ctx, "grpc-unary", scenario, send)


#: A prefix of this run's client_msg_ids, each made unique by a counter: cheaper than a UUID per
#: send (os.urandom and formatting took ~7 % of the generator's samples), and the generator's
#: CPU is counted as the gateway's share.
_RUN_KEY = uuid.uuid4().hex
_SEND_NUMBERS = itertools.count()


def _key() -> str:
    return f"{_RUN_KEY}-{next(_SEND_NUMBERS)}"


async def run_grpc_stream(ctx: BenchContext, scenario: Scenario) -> PathResult:
    """SendMessages: each caller keeps one stream open and sends over it, one send in flight
    at a time (the same closed loop), so gRPC's per-call cost is paid once per caller."""
    conversation_ids = ctx.conversation_ids(scenario)
    token = ctx.stack.internal_token
    ctx.pids["generator"] = os.getpid()
    async with bench_chat_server(ctx) as target, grpc.aio.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        streams = [stub.SendMessages(metadata=internal_metadata(token, user)) for user in ctx.users]

        async def send(worker: int, conversation: int) -> None:
            request = chat_pb2.SendMessagesRequest(
                send=chat_pb2.SendMessageRequest(
                    conversation_id=conversation_ids[conversation],
                    client_msg_id=_key(),
                    content=CONTENT,
                )
            )
            await streams[worker].write(request)
            response = await streams[worker].read()
            if not isinstance(response, chat_pb2.SendMessagesResponse):
                raise BenchError(f"stream {worker} ended: {await streams[worker].code()}")
            if response.HasField("error"):
                raise BenchError(f"send failed: {response.error.code}")

        try:
            return await drive(ctx, "grpc-stream", scenario, send)
        finally:
            for stream in streams:
                stream.cancel()


async def run_service(ctx: BenchContext, scenario: Scenario) -> PathResult:
    """`ChatService.send_message` in this process, on a pool like the chat process's."""
    conversation_ids = ctx.conversation_ids(scenario)
    users = ctx.users
    database = ctx.settings.database.model_copy(update={"url": SecretStr(ctx.dsn)})
    ctx.pids["chat+generator"] = os.getpid()
    pool = await create_pool(database, "realchat-bench", SESSION_SETTINGS)
    try:
        chat = ctx.settings.chat
        service = ChatService(ChatStore(pool, chat.outbox_shards), chat.max_members)

        async def send(worker: int, conversation: int) -> None:
            await service.send_message(
                users[worker], conversation_ids[conversation], _key(), CONTENT
            )

        return await drive(ctx, "service", scenario, send)
    finally:
        await pool.close()
