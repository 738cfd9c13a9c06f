"""Gateway failover under traffic, seen through the Python SDK: two gateways behind HAProxy, four
SDK clients (two users x two devices) spread over both, a steady stream of sends. One gateway is
SIGKILLed, then both are restarted one by one (SIGTERM, start): the clients reconnect through the
balancer, sync, and each one's `messages()` yields every seq exactly once, in order.

Runs a throw-away stack of its own (`realchat stack up --gateways 2`) on free ports.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from realchat.client import (
    ClientOptions,
    Disconnected,
    Message,
    RateLimited,
    RealChatClient,
)
from realchat.stack.process import is_alive
from tests.support.client import PASSWORD
from tests.support.scale_out import TwoGateways, two_gateways_stack
from tests.support.waiting import eventually

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

#: Generous liveness bound for anything the test waits on.
DEADLINE_S = 90.0
#: Sends per second, alternating between two senders (one per user: half the per-user limit each).
RATE_PER_S = 20
OPTIONS = ClientOptions(reconnect_initial_s=0.2, reconnect_max_s=2.0)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def two_gateways(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TwoGateways]:
    with two_gateways_stack(tmp_path_factory.mktemp("gateway-failover") / "stack") as stack:
        yield stack


@dataclass
class Watched:
    """One SDK client whose `messages()` and reconnecting `Disconnected` events are recorded
    with their time."""

    name: str
    client: RealChatClient
    received: list[tuple[int, float]] = field(default_factory=list)
    disconnects: list[float] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._messages()), asyncio.create_task(self._events())]

    async def _messages(self) -> None:
        async for message in self.client.messages():
            self.received.append((message.seq, time.monotonic()))
            self.changed.set()

    async def _events(self) -> None:
        async for event in self.client.events():
            if isinstance(event, Disconnected) and event.reconnect_in is not None:
                self.disconnects.append(time.monotonic())

    def seqs(self) -> list[int]:
        return [seq for seq, _ in self.received]

    async def wait_for(self, count: int) -> None:
        async def loop() -> None:
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), DEADLINE_S)

    def recovery_s(self, since: float) -> float | None:
        """From `since` to the first message received after this client's first disconnect
        at or after `since`; None if it was not disconnected."""
        cut = next((t for t in self.disconnects if t >= since), None)
        if cut is None:
            return None
        first = next((t for _, t in self.received if t > cut), None)
        return None if first is None else first - since


@dataclass
class Traffic:
    """Two senders taking turns at `RATE_PER_S` overall; each send awaited (sequential seqs)."""

    senders: list[RealChatClient]
    conversation: str
    sent: list[Message] = field(default_factory=list)
    rate_limited: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            sender = self.senders[len(self.sent) % len(self.senders)]
            self.sent.append(await self.send(sender, f"m{len(self.sent)}"))
            self.progress.set()
            next_at = max(next_at + 1 / RATE_PER_S, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())  # pacing, not waiting for a result

    async def send(self, sender: RealChatClient, content: str) -> Message:
        msg_id = uuid.uuid4().hex
        while True:
            try:
                return await sender.send(
                    self.conversation, content, client_msg_id=msg_id, timeout_s=DEADLINE_S
                )
            except RateLimited:
                # A re-sent frame after a reconnect can exceed the per-user rate: the same id
                # again is safe (stored once) and tells whether it was stored.
                self.rate_limited += 1
                await asyncio.sleep(0.2)

    async def until_sent(self, count: int) -> None:
        async def loop() -> None:
            while len(self.sent) < count:
                self.progress.clear()
                await self.progress.wait()

        await asyncio.wait_for(loop(), DEADLINE_S)


@dataclass
class Scenario:
    watched: list[Watched]
    traffic: Traffic


async def scenario(exits: AsyncExitStack, base: str) -> Scenario:
    """Alice and bob in one conversation; four watched clients started one after the other (round
    robin puts every other one on each gateway), then one sender per user."""
    names = [f"{name}_{uuid.uuid4().hex[:10]}" for name in ("alice", "bob")]
    for name in names:
        await RealChatClient.register(base, name, PASSWORD)
    owner = await RealChatClient.login(base, names[0], PASSWORD, options=OPTIONS)
    exits.push_async_callback(owner.close)  # REST only: never started
    bob = await owner.user_by_username(names[1])
    conversation = (await owner.create_conversation([bob.user_id], "failover")).conversation_id
    # Every login first: REST requests are balanced too, and would break the alternation.
    clients = [
        await RealChatClient.login(base, name, PASSWORD, options=OPTIONS) for name in names * 3
    ]
    for client in clients:
        await exits.enter_async_context(client)
        await client.wait_ready(DEADLINE_S)
    watched = [
        Watched(f"{name.split('_')[0]}-{n // 2 + 1}", client)
        for n, (name, client) in enumerate(zip(names * 2, clients[:4], strict=True))
    ]
    senders = clients[4:]
    for w in watched:
        w.start()
    return Scenario(watched, Traffic(senders, conversation))


async def finish(s: Scenario, runner: asyncio.Task[None]) -> None:
    """Stop the traffic, send one last message, and check every watched client got every seq
    once, in order (a duplicate or a reordering would show before the last one)."""
    s.traffic.stop.set()
    await asyncio.wait_for(runner, DEADLINE_S)
    total = len(s.traffic.sent)
    assert [m.seq for m in s.traffic.sent] == list(range(1, total + 1))
    last = await s.traffic.send(s.traffic.senders[0], "last")
    assert last.seq == total + 1
    for w in s.watched:
        await w.wait_for(total + 1)
    print(f"\n{total + 1} messages; sends answered RateLimited: {s.traffic.rate_limited}")
    for w in s.watched:
        print(f"  {w.name}: {len(w.received)} received, {len(w.disconnects)} disconnect(s)")
        assert w.seqs() == list(range(1, total + 2)), w.name


async def test_sigkill_of_a_gateway_under_traffic_loses_and_reorders_nothing(
    two_gateways: TwoGateways,
) -> None:
    pid = int(str((await asyncio.to_thread(two_gateways.status))["gateway-1"]["pid"]))
    async with AsyncExitStack() as exits:
        s = await scenario(exits, two_gateways.base_url)
        runner = asyncio.create_task(s.traffic.run())
        try:
            await s.traffic.until_sent(2 * RATE_PER_S)  # ~2 s of traffic
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            await s.traffic.until_sent(6 * RATE_PER_S)  # ~4 s more
            await finish(s, runner)
        finally:
            s.traffic.stop.set()
            await asyncio.gather(runner, return_exceptions=True)
            await exits.aclose()
            if await eventually(lambda: not is_alive(pid), timeout_s=15):
                await two_gateways.run("stack", "start", "gateway-1")
        recoveries = {w.name: w.recovery_s(killed_at) for w in s.watched}
        affected = {name: r for name, r in recoveries.items() if r is not None}
        print("recovery after SIGKILL (kill -> first message after the reconnect):")
        for name, seconds in affected.items():
            print(f"  {name}: {seconds:.3f} s")
        assert affected, f"no watched client was on gateway-1: {recoveries}"
        assert await two_gateways.healthy("gateway-1")


async def test_rolling_restart_of_both_gateways_loses_and_reorders_nothing(
    two_gateways: TwoGateways,
) -> None:
    async with AsyncExitStack() as exits:
        s = await scenario(exits, two_gateways.base_url)
        runner = asyncio.create_task(s.traffic.run())
        try:
            await s.traffic.until_sent(RATE_PER_S)
            for name in ("gateway-1", "gateway-2"):
                started = time.monotonic()
                await two_gateways.run("stack", "kill", name, "--signal", "TERM")
                await two_gateways.run("stack", "start", name)
                assert await eventually_healthy(two_gateways, name), f"{name} not healthy"
                print(f"\n{name} restarted in {time.monotonic() - started:.2f} s")
                await s.traffic.until_sent(len(s.traffic.sent) + RATE_PER_S)
            await finish(s, runner)
        finally:
            s.traffic.stop.set()
            await asyncio.gather(runner, return_exceptions=True)
            await exits.aclose()
        assert all(w.disconnects for w in s.watched), "every client was on a restarted gateway"


async def eventually_healthy(stack: TwoGateways, name: str) -> bool:
    deadline = time.monotonic() + DEADLINE_S
    while not await stack.healthy(name):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.25)
    return True
