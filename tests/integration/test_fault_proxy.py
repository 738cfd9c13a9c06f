"""The fault proxy really does what the link faults claim, measured through a real Toxiproxy on
a TCP echo server: latency delays every exchange both ways, a partition lets nothing through
and keeps connections hanging, healing cuts the connections the partition crossed and new ones
work at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from realchat.stack import process
from realchat.stack.component import ComponentNotReadyError
from realchat.stack.faultproxy import FaultProxy, Link, latency_toxics, partition_toxics
from tests.support.ports import free_port_block

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[FaultProxy]:
    base = free_port_block(offsets=(0, 1, 2))
    server = await asyncio.start_server(_echo, "127.0.0.1", base + 2)
    proxy = FaultProxy(tmp_path, "127.0.0.1", base, [Link("echo", base + 1, base + 2)])
    await asyncio.to_thread(proxy.prepare)
    child = process.spawn(proxy.process_spec())
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                await proxy.probe()
                break
            except ComponentNotReadyError:
                assert time.monotonic() < deadline, "the fault proxy did not become ready"
                await asyncio.sleep(0.1)
        yield proxy
    finally:
        child.kill()
        child.wait()
        server.close()


async def _connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    [link] = proxy.links
    return await asyncio.open_connection("127.0.0.1", link.listen_port)


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    started = time.monotonic()
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
    return time.monotonic() - started


async def test_latency_delays_both_directions(proxy: FaultProxy) -> None:
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer) < 0.2
    await proxy.add_toxics("echo", latency_toxics(150))
    assert await _round_trip(reader, writer) >= 0.3  # 150 ms each way
    await proxy.heal("echo", cut_connections=False)
    assert await _round_trip(reader, writer) < 0.2  # the same connection, healed
    writer.close()
    await writer.wait_closed()


async def test_a_partition_passes_nothing_and_healing_cuts_what_it_crossed(
    proxy: FaultProxy,
) -> None:
    reader, writer = await _connect(proxy)
    await _round_trip(reader, writer)
    await proxy.add_toxics("echo", partition_toxics())
    writer.write(b"lost")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(4), 1.0)
    fresh_reader, fresh_writer = await _connect(proxy)  # accepted, but nothing gets through
    fresh_writer.write(b"lost")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fresh_reader.read(4), 0.5)
    await proxy.heal("echo", cut_connections=True)
    for old in (reader, fresh_reader):  # cut: end of stream (or a reset), never late data
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(old.read(4), 5) == b""
    new_reader, new_writer = await _connect(proxy)
    assert await _round_trip(new_reader, new_writer) < 1.0
    for done in (writer, fresh_writer, new_writer):
        done.close()
        with contextlib.suppress(ConnectionError):
            await done.wait_closed()
