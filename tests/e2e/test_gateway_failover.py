"""Gateway failover under traffic, seen through the Python SDK, on two gateways behind HAProxy.

SIGKILL: three clients sit on gateway-1 (reached through the balancer: two watchers and a
sender) and three on gateway-2 (on its own port: two watchers and a sender). Each sender runs
its own loop at half of `RATE_PER_S`, issuing a send on schedule whatever happened to the
previous ones, so gateway-2's side keeps sending while gateway-1's side is cut off. After the
kill, gateway-1's clients reconnect through the balancer (to gateway-2), sync, and still see
every message once, in order; gateway-2's clients see no gap at all: no disconnect, no
duplicate, nothing held back, no gap sync, and never a long silence. Recovery times go to
`var/test-output/failover.json`.

Rolling restart: both gateways restarted one by one (SIGTERM, start) under traffic; every client
is closed with 1001 at least once and ends with every message once, in order.

Runs a throw-away stack of its own (`realchat stack up --gateways 2`) on free ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from realchat.client import ClientOptions, Disconnected, Message, RealChatClient
from realchat.stack.process import is_alive
from tests.support.client import PASSWORD
from tests.support.scale_out import TwoGateways, two_gateways_stack
from tests.support.waiting import eventually

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

#: Generous liveness bound for anything the test waits on.
DEADLINE_S = 90.0
#: Sends per second in all, split evenly over the sender loops (one per user: each stays at
#: half of the server's per-user limit, so only re-send bursts can hit it).
RATE_PER_S = 20
#: Generous bounds: SIGKILL to the first message after the reconnect, and the longest silence a
#: client on the surviving gateway may see (it receives about ten messages a second).
RECOVERY_BOUND_S = 15.0
SURVIVOR_SILENCE_BOUND_S = 2.0
OPTIONS = ClientOptions(reconnect_initial_s=0.2, reconnect_max_s=2.0)
REPORT = Path(__file__).resolve().parents[2] / "var" / "test-output" / "failover.json"


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
    disconnects: list[tuple[float, int | None]] = field(default_factory=list)
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
                self.disconnects.append((time.monotonic(), event.code))

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
        cut = next((t for t, _ in self.disconnects if t >= since), None)
        if cut is None:
            return None
        first = next((t for _, t in self.received if t > cut), None)
        return None if first is None else first - since

    def longest_silence_s(self, start: float, end: float) -> float:
        """The longest time between `start`, the arrivals in between, and `end`."""
        times = [start, *(t for _, t in self.received if start < t < end), end]
        return max(b - a for a, b in itertools.pairwise(times))

    def counters(self) -> dict[str, int]:
        """What the SDK did behind the application's back: copies dropped, messages held back
        for a gap, syncs sent for a gap."""
        ordering = self.client.ordering
        return {
            "duplicates": ordering.duplicates,
            "held_back": ordering.held_total,
            "gap_syncs": self.client.gap_syncs,
        }


@dataclass
class Sender:
    """A send every `1 / rate_per_s` seconds, each in a task of its own: one that waits through a
    reconnect does not hold the next one up. No retries here: the SDK must hide rate limits."""

    name: str
    client: RealChatClient
    conversation: str
    rate_per_s: float
    sends: list[asyncio.Task[Message]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            content = f"{self.name}-{len(self.sends)}"
            send = self.client.send(self.conversation, content, timeout_s=DEADLINE_S)
            self.sends.append(asyncio.create_task(send))
            next_at += 1 / self.rate_per_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_at - time.monotonic())):
                    await stop.wait()


@dataclass
class Traffic:
    """Independent sender loops, started together and stopped together."""

    senders: list[Sender]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = 0.0
    stopped_at: float = 0.0

    async def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            await asyncio.gather(*(s.run(self.stop) for s in self.senders))
        finally:
            self.stopped_at = time.monotonic()

    def issued(self) -> int:
        return sum(len(s.sends) for s in self.senders)

    async def until_issued(self, count: int) -> None:
        assert await eventually(lambda: self.issued() >= count, DEADLINE_S, 0.05)

    def rate_per_s(self) -> float:
        """Sends issued per second while the loops ran."""
        return self.issued() / (self.stopped_at - self.started_at)

    def stored_rate_per_s(self) -> float:
        """Sends stored by now (call it when the loops stop) per second of the loops' run."""
        stored = sum(
            t.done() and not t.cancelled() and t.exception() is None
            for s in self.senders
            for t in s.sends
        )
        return stored / (self.stopped_at - self.started_at)

    async def stored(self) -> list[Message]:
        """Every send's stored message (a send that failed fails the test here)."""
        return list(await asyncio.gather(*(t for s in self.senders for t in s.sends)))

    async def cancel(self) -> None:
        self.stop.set()
        for task in (t for s in self.senders for t in s.sends):
            task.cancel()
        await asyncio.gather(*(t for s in self.senders for t in s.sends), return_exceptions=True)


@dataclass
class Scenario:
    watched: list[Watched]
    traffic: Traffic


async def users_and_conversation(base: str) -> tuple[list[str], str]:
    """Alice and bob, registered, and a conversation of theirs."""
    names = [f"{name}_{os.urandom(5).hex()}" for name in ("alice", "bob")]
    for name in names:
        await RealChatClient.register(base, name, PASSWORD)
    owner = await RealChatClient.login(base, names[0], PASSWORD, options=OPTIONS)
    try:
        bob = await owner.user_by_username(names[1])
        conversation = (await owner.create_conversation([bob.user_id], "failover")).conversation_id
    finally:
        await owner.close()  # REST only: never started
    return names, conversation


async def started(exits: AsyncExitStack, base: str, name: str) -> RealChatClient:
    client = await RealChatClient.login(base, name, PASSWORD, options=OPTIONS)
    await exits.enter_async_context(client)
    await client.wait_ready(DEADLINE_S)
    return client


async def started_on(
    stack: TwoGateways, instance: int, start: Callable[[], Awaitable[RealChatClient]]
) -> RealChatClient:
    """A client started through the balancer that landed on gateway `instance` (its count of
    open WebSockets went up); one that landed elsewhere is closed and another one started,
    after one more request through the balancer (a start makes two, login and upgrade: without
    it, round robin would send every upgrade to the same gateway)."""
    for _ in range(6):
        before = await stack.active_connections(instance)
        client = await start()
        if await stack.active_connections(instance) > before:
            return client
        await client.close()
        await stack.balanced_request()
    raise AssertionError(f"no client landed on gateway-{instance}")


def ordered_once(watched: list[Watched], count: int) -> None:
    for w in watched:
        assert w.seqs() == list(range(1, count + 1)), w.name


async def finish(s: Scenario) -> int:
    """Stop the traffic; every send stored once; one last message; every watched client got
    every seq once, in order (a duplicate or a reordering would show before the last one).
    Returns how many messages there were."""
    s.traffic.stop.set()
    stored = await asyncio.wait_for(s.traffic.stored(), DEADLINE_S)
    total = len(stored)
    assert sorted(m.seq for m in stored) == list(range(1, total + 1))
    first = s.traffic.senders[0]
    last = await first.client.send(first.conversation, "last", timeout_s=DEADLINE_S)
    assert last.seq == total + 1
    for w in s.watched:
        await w.wait_for(total + 1)
    ordered_once(s.watched, total + 1)
    return total + 1


async def test_sigkill_of_a_gateway_under_traffic_loses_and_reorders_nothing(
    two_gateways: TwoGateways,
) -> None:
    pid = int(str((await asyncio.to_thread(two_gateways.status))["gateway-1"]["pid"]))
    balanced, direct = two_gateways.base_url, two_gateways.gateway_url(2)
    names, conversation = await users_and_conversation(balanced)
    async with AsyncExitStack() as exits:

        def on_gateway_1(name: str) -> Awaitable[RealChatClient]:
            return started_on(two_gateways, 1, lambda: started(exits, balanced, name))

        doomed = [
            Watched("alice-on-1", await on_gateway_1(names[0])),
            Watched("bob-on-1", await on_gateway_1(names[1])),
        ]
        doomed_sender = await on_gateway_1(names[0])
        survivors = [
            Watched("alice-on-2", await started(exits, direct, names[0])),
            Watched("bob-on-2", await started(exits, direct, names[1])),
        ]
        survivor_sender = await started(exits, direct, names[1])
        senders = [
            Sender("alice", doomed_sender, conversation, RATE_PER_S / 2),
            Sender("bob", survivor_sender, conversation, RATE_PER_S / 2),
        ]
        s = Scenario([*doomed, *survivors], Traffic(senders))
        for w in s.watched:
            w.start()
        runner = asyncio.create_task(s.traffic.run())
        try:
            await s.traffic.until_issued(2 * RATE_PER_S)  # ~2 s of traffic
            before = {w.name: w.counters() for w in survivors}
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            await s.traffic.until_issued(8 * RATE_PER_S)  # ~6 s more
            s.traffic.stop.set()
            await asyncio.wait_for(runner, DEADLINE_S)
            stopped_at, stored_rate = s.traffic.stopped_at, s.traffic.stored_rate_per_s()
            total = await finish(s)
        finally:
            await s.traffic.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await exits.aclose()
            if await eventually(lambda: not is_alive(pid), timeout_s=15):
                await two_gateways.run("stack", "start", "gateway-1")

    recoveries = {w.name: w.recovery_s(killed_at) for w in doomed}
    silences = {w.name: w.longest_silence_s(killed_at, stopped_at) for w in survivors}
    report = {
        "messages": total,
        "send_rate_per_s": round(s.traffic.rate_per_s(), 2),
        "stored_rate_per_s": round(stored_rate, 2),
        "recovery_s": recoveries,
        "survivor_longest_silence_s": silences,
        "rate_limited_retries": doomed_sender.rate_limited_retries,
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfailover: {json.dumps(report)}")

    assert s.traffic.rate_per_s() >= 0.9 * RATE_PER_S, report
    assert stored_rate >= 0.75 * RATE_PER_S, report
    # gateway-1's clients: cut off, back within the bound, every message once, in order.
    for name, seconds in recoveries.items():
        assert seconds is not None, f"{name} was on gateway-1 but never reconnected: {report}"
        assert seconds < RECOVERY_BOUND_S, report
    # gateway-2's clients: no gap at all.
    for w in survivors:
        assert w.disconnects == [], w.name
        assert w.counters() == before[w.name], w.name
        assert silences[w.name] < SURVIVOR_SILENCE_BOUND_S, report
    assert await two_gateways.healthy("gateway-1")


async def test_rolling_restart_of_both_gateways_loses_and_reorders_nothing(
    two_gateways: TwoGateways,
) -> None:
    base = two_gateways.base_url
    names, conversation = await users_and_conversation(base)
    async with AsyncExitStack() as exits:
        # Round robin puts every other client on each gateway (REST requests are balanced too:
        # it does not have to be exact, every gateway is restarted).
        clients = [await started(exits, base, name) for name in names * 3]
        watched = [
            Watched(f"{name.split('_')[0]}-{n // 2 + 1}", client)
            for n, (name, client) in enumerate(zip(names * 2, clients[:4], strict=True))
        ]
        senders = [
            Sender(name.split("_")[0], client, conversation, RATE_PER_S / 2)
            for name, client in zip(names, clients[4:], strict=True)
        ]
        s = Scenario(watched, Traffic(senders))
        for w in s.watched:
            w.start()
        runner = asyncio.create_task(s.traffic.run())
        try:
            await s.traffic.until_issued(RATE_PER_S)
            for name in ("gateway-1", "gateway-2"):
                restarted = time.monotonic()
                await two_gateways.run("stack", "kill", name, "--signal", "TERM")
                await two_gateways.run("stack", "start", name)
                assert await eventually_healthy(two_gateways, name), f"{name} not healthy"
                print(f"\n{name} restarted in {time.monotonic() - restarted:.2f} s")
                await s.traffic.until_issued(s.traffic.issued() + RATE_PER_S)
            await finish(s)
        finally:
            await s.traffic.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await exits.aclose()
    for w in s.watched:
        assert w.disconnects, f"{w.name} was on a restarted gateway"
        assert w.disconnects[0][1] == 1001, f"{w.name}: drained with {w.disconnects}"


async def eventually_healthy(stack: TwoGateways, name: str) -> bool:
    deadline = time.monotonic() + DEADLINE_S
    while not await stack.healthy(name):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.25)
    return True
