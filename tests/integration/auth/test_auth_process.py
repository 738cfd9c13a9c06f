"""The assembled auth process with generated keys: accounts and tokens over HTTP, ops endpoints,
the chat service accepting its tokens over gRPC, and a clean stop (in-process and as
`realchat auth-service`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from pydantic import SecretStr

from realchat.auth.keys import generate_keypair
from realchat.auth.server import serve as serve_auth
from realchat.auth.tokens import KeyConfigError
from realchat.chat.server import serve as serve_chat
from realchat.chat.v1 import chat_pb2 as pb
from realchat.chat.v1 import chat_pb2_grpc
from realchat.config import AuthSettings, ChatSettings, DatabaseSettings, RedisSettings, Settings
from realchat.stack.supervisor import Stack
from tests.support.ports import free_port_block

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "correct horse battery"


def process_settings(stack: Stack, db_dsn: str, keys_dir: Path) -> Settings:
    base = free_port_block(offsets=(0, 1, 2, 3))
    private, public = generate_keypair(keys_dir)
    return Settings(
        database=DatabaseSettings(url=SecretStr(db_dsn)),
        redis=RedisSettings(url=stack.redis.url),
        auth=AuthSettings(
            http_port=base,
            ops_port=base + 1,
            url=f"http://127.0.0.1:{base}",
            private_key_file=private,
            public_key_file=public,
        ),
        chat=ChatSettings(
            grpc_port=base + 2, ops_port=base + 3, internal_token=SecretStr(uuid.uuid4().hex)
        ),
    )


async def wait_ready(http: aiohttp.ClientSession, url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with http.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready after {timeout_s}s")
        await asyncio.sleep(0.1)


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, str]) -> Any:
    async with http.post(url, json=body) as response:
        assert response.status in (200, 201), await response.text()
        return await response.json()


async def test_auth_process_serves_accounts_and_the_chat_service_accepts_its_tokens(
    stack: Stack, db_dsn: str, tmp_path: Path
) -> None:
    settings = process_settings(stack, db_dsn, tmp_path / "secrets")
    stop = asyncio.Event()
    services = [
        asyncio.create_task(serve_auth(settings, stop)),
        asyncio.create_task(serve_chat(settings, stop)),
    ]
    auth = settings.auth.url
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, f"http://127.0.0.1:{settings.auth.ops_port}/readyz")
            alice = await post(
                http, f"{auth}/v1/users", {"username": "alice", "password": PASSWORD}
            )
            bob = await post(http, f"{auth}/v1/users", {"username": "bob", "password": PASSWORD})
            issued = await post(
                http, f"{auth}/v1/tokens", {"username": "alice", "password": PASSWORD}
            )
            token = issued["access_token"]
            async with http.get(
                f"{auth}/v1/users/by-username/bob", headers={"Authorization": f"Bearer {token}"}
            ) as found:
                assert await found.json() == bob
            async with http.get(f"http://127.0.0.1:{settings.auth.ops_port}/metrics") as metrics:
                assert 'realchat_auth_logins_total{outcome="succeeded"}' in await metrics.text()

        async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.chat.grpc_port}") as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            as_alice = (("authorization", f"Bearer {token}"),)
            conversation = await stub.CreateConversation(
                pb.CreateConversationRequest(member_ids=[bob["user_id"]]),
                metadata=as_alice,
                wait_for_ready=True,
            )
            assert list(conversation.member_ids) == [alice["user_id"], bob["user_id"]]
            sent = await stub.SendMessage(
                pb.SendMessageRequest(
                    conversation_id=conversation.conversation_id, client_msg_id="m1", content="hi"
                ),
                metadata=as_alice,
            )
            assert sent.message.sender_id == alice["user_id"]
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*services, return_exceptions=True), timeout=30)
    assert [s.exception() for s in services] == [None, None]


async def test_auth_process_without_a_signing_key_names_the_setting() -> None:
    with pytest.raises(KeyConfigError, match="REALCHAT_AUTH__PRIVATE_KEY_FILE is not set"):
        await serve_auth(Settings(auth=AuthSettings()), asyncio.Event())


async def test_auth_process_refuses_a_public_key_of_another_pair(tmp_path: Path) -> None:
    private, _ = generate_keypair(tmp_path / "one")
    _, other_public = generate_keypair(tmp_path / "two")
    settings = Settings(auth=AuthSettings(private_key_file=private, public_key_file=other_public))
    with pytest.raises(KeyConfigError, match="not the public half"):
        await serve_auth(settings, asyncio.Event())


def start_command(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m realchat <command>`, its output in `log_path`."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "realchat", command],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


async def test_realchat_auth_service_command_starts_and_stops_on_sigterm(
    stack: Stack, db_dsn: str, tmp_path: Path
) -> None:
    settings = process_settings(stack, db_dsn, tmp_path / "secrets")
    auth = settings.auth
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALCHAT_")}
    env.update(
        {
            "REALCHAT_DATABASE__URL": db_dsn,
            "REALCHAT_REDIS__URL": stack.redis.url,
            "REALCHAT_AUTH__HTTP_PORT": str(auth.http_port),
            "REALCHAT_AUTH__OPS_PORT": str(auth.ops_port),
            "REALCHAT_AUTH__PRIVATE_KEY_FILE": str(auth.private_key_file),
        }
    )
    log_path = tmp_path / "auth-service.log"
    child = start_command("auth-service", env, log_path)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, f"http://127.0.0.1:{auth.ops_port}/readyz")
            await post(http, f"{auth.url}/v1/users", {"username": "carol", "password": PASSWORD})
        child.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(child.wait, 30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert code == 0, log_path.read_text()
