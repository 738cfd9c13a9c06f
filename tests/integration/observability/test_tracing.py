"""One trace follows a message from the client's send to every recipient's socket, and the log
line of a refused send carries that trace's id.

The chat service, an outbox publisher and a gateway run in this process against the test
stack's PostgreSQL (a fresh database), Redis and Kafka, so one in-memory exporter sees the spans
of all three; between them the context travels as it does between processes: gRPC metadata,
the outbox row, Kafka headers.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from realchat.auth.keys import generate_keypair
from realchat.auth.tokens import TokenIssuer, load_private_key
from realchat.chat.server import serve as serve_chat
from realchat.config import (
    AuthSettings,
    ChatSettings,
    DatabaseSettings,
    GatewaySettings,
    HttpSettings,
    KafkaSettings,
    LoggingSettings,
    OutboxSettings,
    PresenceSettings,
    RedisSettings,
    Settings,
)
from realchat.gateway.server import serve as serve_gateway
from realchat.observability.logging import configure_logging
from realchat.observability.tracing import install
from realchat.outbox.publisher import serve_publisher
from realchat.stack.supervisor import Stack
from tests.support.client import User, connect
from tests.support.databases import fresh_database, new_users, utc_pool
from tests.support.ports import free_port_block
from tests.support.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

ServiceMain = Callable[[Settings, asyncio.Event], Awaitable[None]]


@dataclass
class InProcess:
    base_url: str
    issuer: TokenIssuer
    exporter: InMemorySpanExporter
    pool: asyncpg.Pool

    async def user(self) -> User:
        """A real account (members must exist) and a token for it."""
        (user_id,) = await new_users(self.pool, 1)
        token, _ = self.issuer.issue(user_id)
        return User(str(user_id), f"u{user_id.hex[:24]}", token)


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider, installed once (OpenTelemetry allows one per process);
    shut down afterwards, so later tests in this process do not accumulate spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    install(provider)
    yield memory
    provider.shutdown()
    memory.clear()


@pytest_asyncio.fixture(loop_scope="session")
async def services(
    stack: Stack, tmp_path: Path, exporter: InMemorySpanExporter
) -> AsyncIterator[InProcess]:
    private_key, public_key = generate_keypair(tmp_path / "keys")
    base = free_port_block(offsets=tuple(range(6)))
    async with fresh_database(stack.postgres) as dsn:
        settings = Settings(
            database=DatabaseSettings(url=SecretStr(dsn)),
            redis=RedisSettings(url=stack.redis.url),
            kafka=KafkaSettings(bootstrap_servers=stack.kafka.bootstrap_servers),
            chat=ChatSettings(
                grpc_port=base + 1, ops_port=base + 2, internal_token=SecretStr("t" * 32)
            ),
            outbox=OutboxSettings(ops_port=base + 3, poll_interval_s=0.01),
            auth=AuthSettings(public_key_file=public_key),
            gateway=GatewaySettings(ops_port=base + 4, instance_id=f"trace-{base}"),
            presence=PresenceSettings(ops_port=base + 5),
            http=HttpSettings(port=base),
        )
        stop = asyncio.Event()
        mains: list[ServiceMain] = [serve_chat, serve_publisher, serve_gateway]
        tasks = [asyncio.create_task(main(settings, stop)) for main in mains]
        pool = await utc_pool(dsn, max_size=2)
        try:
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{base}"
                assert await _until_ready(http, url, tasks)
            yield InProcess(
                url,
                TokenIssuer(
                    load_private_key(private_key, "key"), "realchat-1", "realchat", "realchat", 600
                ),
                exporter,
                pool,
            )
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await pool.close()


async def _until_ready(
    http: aiohttp.ClientSession, url: str, tasks: list[asyncio.Task[None]]
) -> bool:
    for _ in range(300):
        failed = [t for t in tasks if t.done()]
        if failed:
            failed[0].result()  # raises what stopped it
        try:
            async with http.get(f"{url}/v1/openapi.json") as reply:
                if reply.status == 200:
                    return True
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    return False


def spans_of(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    return next((s for s in spans if s.context.span_id == span.parent.span_id), None)


async def test_one_trace_from_the_send_to_every_recipients_socket(services: InProcess) -> None:
    alice, bob = await services.user(), await services.user()
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {alice.token}"}
        body = {"member_ids": [bob.user_id]}
        async with http.post(
            f"{services.base_url}/v1/conversations", json=body, headers=headers
        ) as r:
            assert r.status == 201, await r.text()
            conversation = (await r.json())["conversation_id"]
        alices = [await connect(http, services.base_url, alice) for _ in range(2)]
        bobs = await connect(http, services.base_url, bob)
        services.exporter.clear()
        await alices[0].send(
            {
                "type": "send",
                "conversation_id": conversation,
                "client_msg_id": "k1",
                "content": "hi",
            }
        )
        for device in (alices[1], bobs):
            await device.wait(lambda d: d.seqs(conversation) == [1])

        def root() -> ReadableSpan | None:
            return next(
                (s for s in services.exporter.get_finished_spans() if s.name == "ws send"), None
            )

        assert await eventually(lambda: root() is not None, timeout_s=10)
        send = root()
        assert send is not None
        assert send.parent is None

        def writes():
            return [
                s
                for s in spans_of(services.exporter, send.context.trace_id)
                if s.name == "ws write"
            ]

        # Two sockets received it: alice's other device and bob's.
        assert await eventually(lambda: len(writes()) == 2, timeout_s=10)
        spans = spans_of(services.exporter, send.context.trace_id)
        for write in writes():
            chain = [write.name]
            node = parent_of(write, spans)
            while node is not None:
                chain.append(node.name)
                node = parent_of(node, spans)
            assert chain == [
                "ws write",
                "chat.message.created.v1 process",
                "chat.message.created.v1 publish",
                "realchat.chat.v1.ChatService/SendMessage",  # server
                "realchat.chat.v1.ChatService/SendMessage",  # client
                "ws send",
            ]
        users = {s.attributes.get("realchat.user_id") for s in writes() if s.attributes}
        assert users == {alice.user_id, bob.user_id}
        for device in [*alices, bobs]:
            await device.close()


async def test_the_log_line_of_a_refused_send_carries_its_trace_id(
    services: InProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(LoggingSettings(), "gateway")
    try:
        alice, stranger_conversation = await services.user(), str(uuid.uuid4())
        async with aiohttp.ClientSession() as http:
            device = await connect(http, services.base_url, alice)
            services.exporter.clear()
            await device.send(
                {
                    "type": "send",
                    "conversation_id": stranger_conversation,
                    "client_msg_id": "k",
                    "content": "x",
                }
            )
            await device.wait(lambda d: d.of_type("error"))
            await device.close()
        lines = [
            json.loads(line)
            for line in capsys.readouterr().out.splitlines()
            if line.startswith("{")
        ]
        refused = [line for line in lines if line.get("message") == "send refused"]
        assert len(refused) == 1
        line = refused[0]
        assert line["error_code"] in {"not_a_member", "conversation_not_found"}
        assert line["user_id"] == alice.user_id
        assert line["conversation_id"] == stranger_conversation
        assert line["service_name"] == "gateway"
        assert "content" not in line
        assert "x" not in line.values()
        sends = [s for s in services.exporter.get_finished_spans() if s.name == "ws send"]
        assert [format(s.context.trace_id, "032x") for s in sends] == [line["trace_id"]]
        assert sends[0].attributes is not None
        assert sends[0].attributes["realchat.error_code"] == line["error_code"]
    finally:
        structlog.reset_defaults()
