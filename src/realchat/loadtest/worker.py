"""One load-generator process: holds a share of the WebSocket clients, sends on an open-loop
schedule, reads (some slowly), churns, and checks every message it receives.

It speaks JSON lines with the coordinator (`realchat.loadtest.loadgen`), typed in
`realchat.loadtest.messages`: the first line on stdin is its configuration; then commands
(`phase`, `verify`, `exit`) on stdin; progress (`tick` once a second, with interval HDR
histograms) and answers on stdout. Only the public contract is used:
`/v1/ws?token=...&device=...` with `send`, `sync` and `ack` frames, `/v1/tokens` to log in again
(or, on the operator path, tokens minted with the stack's signing key).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
import uuid
from collections import Counter

import aiohttp
import msgspec
import uvloop

from realchat.loadtest.collector_pauses import CollectorPauses
from realchat.loadtest.histograms import HISTOGRAMS, new_histogram, record_us
from realchat.loadtest.messages import (
    Done,
    ExitCommand,
    LossExample,
    PhaseCommand,
    PhaseDone,
    Ready,
    Tick,
    Verified,
    VerifyCommand,
    WorkerConfig,
    command_decoder,
)
from realchat.loadtest.pipe import Commands, emit, read_commands
from realchat.loadtest.renewal import issuer_for
from realchat.loadtest.tracking import MessageRegistry
from realchat.loadtest.worker_client import Client, UserInfo


def sends_due(elapsed_s: float, rate: float, total: int) -> int:
    """How many sends of an open-loop schedule are due: send k (from 0) is scheduled at
    k / rate, so at time t the sends 0..floor(t * rate) are due (the first one at once)."""
    return min(total, int(elapsed_s * rate) + 1)


class Worker:
    def __init__(self, config: WorkerConfig) -> None:
        self.index = config.worker
        #: Names this run in every client_msg_id: a reused population's senders exist across
        #: runs, and an id sent again with other content is (rightly) an idempotency conflict.
        self.run = uuid.uuid4().hex[:8]
        self.base = config.base_url.rstrip("/")
        self.ws_base = (config.ws_url or self.base).rstrip("/").replace("http", "ws", 1)
        self.source_ip = config.source_ip
        self.read_delay_s = config.slow.read_delay_s
        self.stall_s = config.slow.stall_s
        self.stall_every_s = config.slow.stall_every_s
        self.max_pending = config.max_pending_per_connection
        self.connect_concurrency = config.connect_concurrency
        self.users = {
            key: UserInfo(u.username, u.password, u.user_id, list(u.conversations), u.token)
            for key, u in config.users.items()
        }
        self.issuer = issuer_for(config.minting) if config.minting else None
        self.clients = [
            Client(self, n, self.users[c.user], c.device, c.kind)
            for n, c in enumerate(config.connections)
        ]
        self.registry = MessageRegistry()
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()
        self.hist = {name: new_histogram() for name in HISTOGRAMS}
        self.acked: dict[str, int] = {}
        #: Slow and stalling clients read slowly only during phases: while connecting, a staller
        #: that has not read its `sync_done` would hold a connect slot for the 120 s timeout (the
        #: 10,000-connection setup crawled at ~10 connections a second once they piled up).
        self.slow_enabled = False
        self.closing = False
        self.session: aiohttp.ClientSession | None = None
        self.loop_lag_ms = 0.0
        self.collector_pauses = CollectorPauses()

    # -- plumbing ----------------------------------------------------------------------------

    def record(self, histogram: str, seconds: float) -> None:
        record_us(self.hist[histogram], int(seconds * 1e6))

    def connected(self) -> int:
        return sum(1 for c in self.clients if c.ws is not None and c.steady_once)

    def tick(self) -> Tick:
        encoded = {}
        for name, hist in self.hist.items():
            encoded[name] = hist.encode().decode() if hist.get_total_count() else ""
            hist.reset()
        return Tick(
            worker=self.index,
            t=time.time(),
            connected=self.connected(),
            pending=sum(len(c.pending) for c in self.clients),
            counts=dict(self.counts),
            errors=dict(self.errors),
            disconnects=dict(self.disconnects),
            seq_conflicts=self.registry.seq_conflicts,
            app_duplicates=self.registry.app_duplicates,
            loop_lag_ms=round(self.loop_lag_ms, 1),
            hist=encoded,
            gc_pause_ms=self.collector_pauses.take(),
        )

    async def _ticker(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(1.0)
            self.loop_lag_ms = max(0.0, (time.monotonic() - before - 1.0) * 1000)
            emit(self.tick())

    async def renew_token(self, user: UserInfo, stale: str) -> None:
        """A new token for `user`, unless another of its devices already renewed `stale`:
        minted with the signing key on the operator path, else by logging in."""
        async with user.renewing:
            if user.token != stale:
                return
            if self.issuer is not None:
                user.take(self.issuer.issue(uuid.UUID(user.user_id))[0])
                self.counts["token_renewals"] += 1
                return
            if self.session is None:
                return
            body = {"username": user.username, "password": user.password}
            async with self.session.post(f"{self.base}/v1/tokens", json=body) as reply:
                if reply.status == 200:
                    user.take((await reply.json())["access_token"])
                    self.counts["token_renewals"] += 1
                else:
                    self.errors[f"login_{reply.status}"] += 1

    # -- phases ------------------------------------------------------------------------------

    async def connect_all(self) -> None:
        gate = asyncio.Semaphore(self.connect_concurrency)

        async def start(client: Client) -> None:
            async with gate:
                client.start()
                await client.wait_steady(timeout_s=120)

        await asyncio.gather(*(start(c) for c in self.clients))

    async def phase(self, rate: float, seconds: float, churn_per_min: float) -> PhaseDone:
        self.slow_enabled = True
        senders = [c for c in self.clients if c.kind == "normal"]
        churner = asyncio.create_task(self._churn(churn_per_min))
        started = time.time()
        sent = 0
        total = int(rate * seconds)
        try:
            while sent < total:
                due = sends_due(time.time() - started, rate, total)
                while sent < due:
                    scheduled = started + sent / rate
                    sent += 1
                    for _ in range(8):
                        client = random.choice(senders) if senders else None
                        if client is not None and client.can_send():
                            await client.send(scheduled)
                            break
                    else:
                        self.counts["send_skipped"] += 1
                await asyncio.sleep(0.005)
        finally:
            churner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await churner
        drained = await self._drain(timeout_s=max(30.0, seconds))
        return PhaseDone(worker=self.index, drained=drained, acked=self.acked)

    async def _drain(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not any(c.pending for c in self.clients):
                return True
            await asyncio.sleep(0.2)
        return False

    async def _churn(self, per_min: float) -> None:
        if per_min <= 0 or not self.clients:
            return
        interval = 60.0 / (per_min * len(self.clients))
        next_at = time.monotonic()
        while True:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            client = random.choice(self.clients)
            if client.ws is not None and client.steady_once:
                client.churn()

    async def verify(self, expected: dict[str, int]) -> Verified:
        """Every client, connected again if it was not, syncs from its positions; then each must
        hold 1..N of each of its conversations."""
        self.slow_enabled = False
        gate = asyncio.Semaphore(50)
        unverified = 0

        async def check(client: Client) -> None:
            nonlocal unverified
            async with gate:
                if not await client.final_sync(timeout_s=120):
                    unverified += 1

        await asyncio.gather(*(check(c) for c in self.clients))
        await asyncio.sleep(0.5)
        lost = 0
        with_loss = 0
        examples: list[LossExample] = []
        checked = 0
        for client in self.clients:
            missing = client.tracker.missing(expected)
            checked += sum(expected.get(c, 0) for c in client.tracker.conversations)
            if missing:
                lost += missing
                with_loss += 1
                if len(examples) < 5:
                    examples.append(LossExample(client.device, missing))
        return Verified(
            worker=self.index,
            clients=len(self.clients),
            unverified=unverified,
            messages_checked=checked,
            lost=lost,
            clients_with_loss=with_loss,
            examples=examples,
            seq_conflicts=self.registry.seq_conflicts,
            app_duplicates=self.registry.app_duplicates,
        )

    async def close(self) -> None:
        self.closing = True
        await asyncio.gather(*(c.stop() for c in self.clients))


async def main() -> None:
    commands = Commands(await read_commands())
    config = msgspec.json.decode(await commands.next(), type=WorkerConfig)
    worker = Worker(config)
    local = (worker.source_ip, 0) if worker.source_ip else None
    connector = aiohttp.TCPConnector(limit=0, local_addr=local)
    async with aiohttp.ClientSession(connector=connector) as session:
        worker.session = session
        ticker = asyncio.create_task(worker._ticker())
        started = time.monotonic()
        worker.collector_pauses.install()
        await worker.connect_all()
        gc.freeze()  # the clients and their sessions live for the run (`collector_pauses`)
        emit(Ready(worker.index, worker.connected(), round(time.monotonic() - started, 2)))
        coordinator_gone = await _obey(worker, commands)
        ticker.cancel()
        if not coordinator_gone:
            emit(worker.tick())
        await worker.close()
    if not coordinator_gone:
        emit(Done(worker.index))


async def _obey(worker: Worker, commands: Commands) -> bool:
    """Run the coordinator's commands until it says exit (False) or is gone (True)."""
    while line := await commands.next():
        match command_decoder.decode(line):
            case PhaseCommand(rate, seconds, churn_per_min):
                finished, result = await commands.unless_gone(
                    worker.phase(rate, seconds, churn_per_min)
                )
                if not finished or result is None:
                    return True
                emit(result)
            case VerifyCommand(expected):
                emit(await worker.verify(expected))
            case ExitCommand():
                return False
    return True


if __name__ == "__main__":
    uvloop.run(main())
