"""The assembled chat process: gRPC health checking, reflection, ops endpoints, clean stop."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import SecretStr

from realchat.chat.server import SERVICE_NAME, serve
from realchat.config import ChatSettings, DatabaseSettings, Settings
from tests.support.ports import free_port_block

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_chat_process_reports_serving_reflects_and_stops_cleanly(db_dsn: str) -> None:
    base = free_port_block(offsets=(0, 1))
    settings = Settings(
        database=DatabaseSettings(url=SecretStr(db_dsn)),
        chat=ChatSettings(
            grpc_port=base, ops_port=base + 1, internal_token=SecretStr(uuid.uuid4().hex)
        ),
    )
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{base}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), wait_for_ready=True
            )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING

            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            names: set[str] = set()
            async for response in reflection.ServerReflectionInfo(iter([request])):
                names = {s.name for s in response.list_services_response.service}
                break
            assert SERVICE_NAME in names

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{base + 1}/readyz") as ready:
                assert ready.status == 200
            async with http.get(f"http://127.0.0.1:{base + 1}/metrics") as metrics:
                assert metrics.status == 200
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=30)
    assert server.exception() is None
