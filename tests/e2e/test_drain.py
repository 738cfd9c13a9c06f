"""Draining a gateway on SIGTERM, under traffic: two gateways behind HAProxy, SDK clients on both
sending and receiving, and one raw client on the draining instance that ignores its close frame.

The draining instance's clients get 1001 and reconnect through the balancer to the other one;
the applications see every message once, in order; a new WebSocket to the draining instance is
refused; the process exits within its drain timeout although one client never answers; and its
consumer group (one per process) is deleted, not left behind.

Runs a throw-away stack of its own (`realchat stack up --gateways 2`) on free ports.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import struct
import termios
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from confluent_kafka.admin import AdminClient

from realchat.client import ClientOptions, Disconnected, RateLimited, RealChatClient
from realchat.stack.process import is_alive
from tests.support.client import PASSWORD, create_conversation, register, send_rest
from tests.support.kafka import QUIET
from tests.support.rawws import OP_CLOSE, OP_TEXT, RawWebSocket
from tests.support.scale_out import TwoGateways, two_gateways_stack
from tests.support.waiting import eventually

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

DRAIN_TIMEOUT_S = 6.0
#: Process start-up and teardown around the drain itself (interpreter exit, librdkafka close).
EXIT_MARGIN_S = 4.0
#: Longer than the drain timeout: a client that ignores its close frame would hold the drain up
#: for this long (aiohttp's own close timeout, 10 s, comes first) if nothing bounded it.
CLOSE_GRACE_S = 30.0
DEADLINE_S = 90.0
OPTIONS = ClientOptions(reconnect_initial_s=0.2, reconnect_max_s=2.0)
#: ~16 KiB messages for the stalled client: 320 KiB, well above its socket buffers and the
#: gateway's write buffer, and far below its send queue (so it is not cut off as slow).
STUFFING = 20


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def two_gateways(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TwoGateways]:
    env = {
        "REALCHAT_GATEWAY__DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
        "REALCHAT_GATEWAY__CLOSE_GRACE_S": str(CLOSE_GRACE_S),
    }
    with two_gateways_stack(tmp_path_factory.mktemp("drain") / "stack", env) as stack:
        yield stack


@dataclass
class Recorded:
    """One SDK client: the seqs its application received and the close codes it saw."""

    client: RealChatClient
    seqs: list[int] = field(default_factory=list)
    codes: list[int | None] = field(default_factory=list)

    def start(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._messages()), asyncio.create_task(self._events())]

    async def _messages(self) -> None:
        async for message in self.client.messages():
            self.seqs.append(message.seq)

    async def _events(self) -> None:
        async for event in self.client.events():
            if isinstance(event, Disconnected) and event.reconnect_in is not None:
                self.codes.append(event.code)


@dataclass
class Sender:
    """Sends one message after another (each awaited) from alternating clients until stopped."""

    clients: list[RealChatClient]
    conversation: str
    sent: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self.stop.is_set():
            client = self.clients[self.sent % len(self.clients)]
            message_id = uuid.uuid4().hex
            while True:
                try:
                    message = await client.send(
                        self.conversation, f"m{self.sent}", client_msg_id=message_id,
                        timeout_s=DEADLINE_S,
                    )  # fmt: skip
                    break
                except RateLimited:  # a re-sent frame after a reconnect; the same id is safe
                    await asyncio.sleep(0.2)
            self.sent += 1
            assert message.seq == self.sent, (message.seq, self.sent)
            await asyncio.sleep(0.05)  # about 15 messages/s: traffic, not a load test


def unread_bytes(client: RawWebSocket) -> int:
    """Bytes waiting in the client's socket receive buffer."""
    return struct.unpack("i", fcntl.ioctl(client.sock, termios.FIONREAD, b"\0\0\0\0"))[0]


def gateway_groups(bootstrap: str) -> set[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    listed = admin.list_consumer_groups(request_timeout=10).result(timeout=10)
    return {g.group_id for g in listed.valid if g.group_id.startswith("realchat-gateway-")}


async def refused(address: str, token: str) -> str:
    """How a new WebSocket to `address` ends: "refused" (no TCP or no upgrade), "close <code>",
    or "hello" (accepted: a draining gateway must not)."""
    try:
        client = await RawWebSocket.connect(f"http://{address}/v1/ws?token={token}")
    except (ConnectionError, OSError):
        return "refused"
    try:
        frame = await asyncio.wait_for(client.recv(), 10)
    except (ConnectionError, OSError):
        return "refused"
    finally:
        client.close()
    if frame is None:
        return "refused"
    if frame.opcode == OP_CLOSE:
        return f"close {frame.close_code}"
    return "hello" if frame.opcode == OP_TEXT else f"opcode {frame.opcode}"


async def test_sigterm_drains_within_its_deadline_under_traffic_and_loses_nothing(
    two_gateways: TwoGateways, http: aiohttp.ClientSession
) -> None:
    base = two_gateways.base_url
    status = await asyncio.to_thread(two_gateways.status)
    pid, address = int(str(status["gateway-1"]["pid"])), str(status["gateway-1"]["address"])
    bootstrap = f"127.0.0.1:{two_gateways.settings.stack.kafka_port}"
    names = [f"{name}_{uuid.uuid4().hex[:10]}" for name in ("alice", "bob")]
    for name in names:
        await RealChatClient.register(base, name, PASSWORD)
    carol = await register(http, base, "carol")
    async with AsyncExitStack() as exits:
        owner = await RealChatClient.login(base, names[0], PASSWORD, options=OPTIONS)
        exits.push_async_callback(owner.close)  # REST only
        bob = await owner.user_by_username(names[1])
        conversation = (await owner.create_conversation([bob.user_id], "drain")).conversation_id
        # Logins first (REST is balanced too); then six connections, every other on each gateway.
        clients = [
            await RealChatClient.login(base, name, PASSWORD, options=OPTIONS) for name in names * 3
        ]
        for client in clients:
            await exits.enter_async_context(client)
            await client.wait_ready(DEADLINE_S)
        recorded = [Recorded(client) for client in clients]
        tasks = [task for r in recorded for task in r.start()]
        # On the draining instance's own port: reads its hello, then never reads again. Its
        # pipe is full (a few large messages fill the small buffers before its queue fills), so
        # its close frame cannot even be written: it would hold the drain for the close grace.
        deaf = await RawWebSocket.connect(
            f"http://{address}/v1/ws?token={carol.token}", rcvbuf=4096, mss=536
        )
        exits.callback(deaf.close)
        assert (await deaf.recv()) is not None
        alone = await create_conversation(http, base, carol)
        for n in range(STUFFING):
            await send_rest(http, base, carol, alone, f"{n:03d} " + "\U0001f600" * 3990)
        assert await eventually(lambda: unread_bytes(deaf) >= 2048, DEADLINE_S)

        groups_before = await asyncio.to_thread(gateway_groups, bootstrap)
        sender = Sender(clients[:2], conversation)
        sending = asyncio.create_task(sender.run())
        try:
            assert await eventually(lambda: sender.sent >= 20, DEADLINE_S)
            signalled = time.monotonic()
            os.kill(pid, signal.SIGTERM)

            assert await eventually(lambda: any(1001 in r.codes for r in recorded), 15)
            probes = [await refused(address, carol.token)]
            assert await eventually(lambda: not is_alive(pid), DRAIN_TIMEOUT_S + EXIT_MARGIN_S)
            exited_after = time.monotonic() - signalled
            probes.append(await refused(address, carol.token))

            sent_at_exit = sender.sent
            assert await eventually(lambda: sender.sent >= sent_at_exit + 20, DEADLINE_S)
        finally:
            sender.stop.set()
            await asyncio.wait_for(sending, DEADLINE_S)
        total = sender.sent
        assert await eventually(lambda: all(len(r.seqs) >= total for r in recorded), DEADLINE_S)
        for task in tasks:
            task.cancel()

    print(f"\nexit {exited_after:.2f} s after SIGTERM (drain timeout {DRAIN_TIMEOUT_S} s)")
    print(f"{total} messages; close codes seen: {[r.codes for r in recorded]}")
    assert exited_after <= DRAIN_TIMEOUT_S + EXIT_MARGIN_S
    # The stalled client really held the drain up until the deadline cut it.
    log = await asyncio.to_thread(Path(str(status["gateway-1"]["log"])).read_text)
    assert "drain deadline passed" in log
    assert all(p in ("refused", "close 1001") for p in probes), probes
    drained = [r for r in recorded if r.codes]
    assert len(drained) == 3, "every other connection was on the draining instance"
    assert all(r.codes[0] == 1001 for r in drained), [r.codes for r in drained]
    for r in recorded:
        assert r.seqs == list(range(1, total + 1))

    # One group per gateway process; the drained one's is gone, the other one's stays.
    assert len(groups_before) == 2, groups_before
    assert len(await asyncio.to_thread(gateway_groups, bootstrap) & groups_before) == 1
