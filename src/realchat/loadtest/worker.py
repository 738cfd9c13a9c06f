"""One load-generator process: holds a share of the WebSocket clients, sends on an open-loop
schedule, reads (some slowly), churns, and checks every message it receives.

It speaks JSON lines with the coordinator (`realchat.loadtest.loadgen`), typed in
`realchat.loadtest.messages`: the first line on stdin is its configuration; then commands
(`phase`, `verify`, `exit`) on stdin; progress (`tick` once a second, with interval HDR
histograms) and answers on stdout. Only the public contract is used:
`/v1/ws?token=...&device=...` with `send`, `sync` and `ack` frames, `/v1/tokens` to log in again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import uvloop
from hdrh.histogram import HdrHistogram

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
from realchat.loadtest.tracking import ClientTracker, MessageRegistry

#: Latencies are recorded in microseconds, up to 10 minutes, 3 significant digits.
HIST_MAX_US = 600_000_000
HIST_DIGITS = 3
HISTOGRAMS = ("live", "backfill", "send_ok")
CLOSE_REASONS = {
    1000: "server_closed",
    1001: "going_away",
    1008: "policy",
    1009: "too_big",
    4001: "unauthorized",
    4008: "slow_consumer",
}
PADDING = "x" * 60


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX_US, HIST_DIGITS)


def sends_due(elapsed_s: float, rate: float, total: int) -> int:
    """How many sends of an open-loop schedule are due: send k (from 0) is scheduled at
    k / rate, so at time t the sends 0..floor(t * rate) are due (the first one at once)."""
    return min(total, int(elapsed_s * rate) + 1)


def emit(record: dict[str, Any] | msgspec.Struct) -> None:
    sys.stdout.write(msgspec.json.encode(record).decode() + "\n")
    sys.stdout.flush()


@dataclass
class UserInfo:
    username: str
    password: str
    token: str
    conversations: list[str]
    refreshing: asyncio.Lock = field(default_factory=asyncio.Lock)


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
            key: UserInfo(u.username, u.password, u.token, list(u.conversations))
            for key, u in config.users.items()
        }
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
        self.slow_enabled = True
        self.closing = False
        self.session: aiohttp.ClientSession | None = None
        self.loop_lag_ms = 0.0

    # -- plumbing ----------------------------------------------------------------------------

    def record(self, histogram: str, seconds: float) -> None:
        self.hist[histogram].record_value(min(max(1, int(seconds * 1e6)), HIST_MAX_US))

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
        )

    async def _ticker(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(1.0)
            self.loop_lag_ms = max(0.0, (time.monotonic() - before - 1.0) * 1000)
            emit(self.tick())

    async def refresh_token(self, user: UserInfo, stale: str) -> None:
        """Log in again (tokens expire after an hour: the soak outlives them)."""
        async with user.refreshing:
            if user.token != stale or self.session is None:
                return
            body = {"username": user.username, "password": user.password}
            async with self.session.post(f"{self.base}/v1/tokens", json=body) as reply:
                if reply.status == 200:
                    user.token = (await reply.json())["access_token"]
                    self.counts["token_refreshes"] += 1
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


class Client:
    def __init__(self, worker: Worker, index: int, user: UserInfo, device: str, kind: str) -> None:
        self.worker = worker
        self.index = index
        self.user = user
        self.device = device
        self.kind = kind  # normal, slow (reads with a delay per frame), stall (stops reading)
        self.tracker = ClientTracker(user.conversations)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pending: dict[str, tuple[str, str, float]] = {}
        self.synced = asyncio.Event()
        self.steady_once = False
        self.churning = False
        self.task: asyncio.Task[None] | None = None
        self.sent = 0
        self.stall_offset = random.uniform(0, worker.stall_every_s)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def wait_steady(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.synced.wait(), timeout_s)

    def can_send(self) -> bool:
        return (
            self.ws is not None
            and self.synced.is_set()
            and len(self.pending) < self.worker.max_pending
        )

    async def send(self, scheduled: float) -> None:
        assert self.ws is not None
        self.sent += 1
        client_msg_id = f"{self.worker.run}w{self.worker.index}c{self.index}n{self.sent}"
        conversation = random.choice(self.user.conversations)
        content = f"{client_msg_id} {scheduled:.6f} {PADDING}"
        self.pending[client_msg_id] = (conversation, content, scheduled)
        self.worker.counts["sent"] += 1
        await self._send_frame(conversation, client_msg_id, content)

    async def _send_frame(self, conversation: str, client_msg_id: str, content: str) -> None:
        frame = {
            "type": "send",
            "conversation_id": conversation,
            "client_msg_id": client_msg_id,
            "content": content,
        }
        ws = self.ws
        if ws is None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            await ws.send_str(msgspec.json.encode(frame).decode())

    def churn(self) -> None:
        ws = self.ws
        if ws is None:
            return
        self.churning = True
        self.worker.counts["churned"] += 1
        asyncio.create_task(ws.close())  # noqa: RUF006 - the session loop notices the end

    async def final_sync(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.ws is None or not self.synced.is_set():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        self.synced.clear()
        self.tracker.start_session()
        await self._sync()
        try:
            await asyncio.wait_for(self.synced.wait(), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def _sync(self) -> None:
        if self.ws is not None:
            frame = {"type": "sync", "positions": self.tracker.positions()}
            with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
                await self.ws.send_str(msgspec.json.encode(frame).decode())

    async def _run(self) -> None:
        worker = self.worker
        first = True
        while not worker.closing:
            if not first:
                worker.counts["reconnects"] += 1
            first = False
            reason = await self._session()
            if worker.closing:
                return
            worker.disconnects[reason] += 1
            churned = reason == "churn"
            await asyncio.sleep(random.uniform(0.2, 1.0) if churned else random.uniform(0.5, 2.0))

    async def _session(self) -> str:
        worker = self.worker
        assert worker.session is not None
        token = self.user.token
        url = f"{worker.ws_base}/v1/ws?token={token}&device={self.device}"
        try:
            ws = await worker.session.ws_connect(url, heartbeat=None, autoping=True)
        except aiohttp.WSServerHandshakeError as exc:
            worker.errors[f"connect_http_{exc.status}"] += 1
            return "connect_failed"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            worker.errors[f"connect_{type(exc).__name__}"] += 1
            return "connect_failed"
        self.ws = ws
        self.churning = False
        self.synced.clear()
        self.tracker.start_session()
        try:
            await self._sync()
            for client_msg_id, (conversation, content, _) in list(self.pending.items()):
                # Unanswered sends go again with the same client_msg_id: stored at most once.
                worker.counts["resent"] += 1
                await self._send_frame(conversation, client_msg_id, content)
            await self._read(ws)
        except (ConnectionError, aiohttp.ClientError, TimeoutError) as exc:
            worker.errors[f"read_{type(exc).__name__}"] += 1
        finally:
            self.ws = None
        if self.churning:
            return "churn"
        code = ws.close_code
        if code == 4001:
            await worker.refresh_token(self.user, token)
        return CLOSE_REASONS.get(code, f"close_{code}") if code is not None else "abnormal"

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        worker = self.worker
        decode = msgspec.json.decode
        while True:
            if self.kind == "stall":
                await self._stall()
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                if msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return
                continue
            frame = decode(msg.data)
            kind = frame.get("type")
            if kind == "message":
                self._message(frame["message"])
            elif kind == "send_ok":
                self._send_ok(frame)
            elif kind == "sync_done":
                self.tracker.sync_done()
                self.steady_once = True
                self.synced.set()
            elif kind == "error":
                worker.errors[str(frame.get("code"))] += 1
                client_msg_id = frame.get("client_msg_id")
                if client_msg_id and self.pending.pop(client_msg_id, None) is not None:
                    worker.counts["send_refused"] += 1
            elif kind is not None:
                worker.counts[f"frames_{kind}"] += 1
            if self.kind == "slow" and worker.slow_enabled:
                await asyncio.sleep(worker.read_delay_s)

    async def _stall(self) -> None:
        worker = self.worker
        while worker.slow_enabled:
            phase = (time.time() + self.stall_offset) % worker.stall_every_s
            if phase >= worker.stall_s:
                return
            await asyncio.sleep(min(0.25, worker.stall_s - phase))

    def _message(self, message: dict[str, Any]) -> None:
        worker = self.worker
        conversation = message["conversation_id"]
        seq = int(message["seq"])
        content = message["content"]
        client_msg_id, _, rest = content.partition(" ")
        worker.registry.observe(conversation, seq, message["message_id"], client_msg_id)
        steady = self.tracker.steady
        verdict = self.tracker.message(conversation, seq)
        if verdict.order_violation:
            worker.counts["order_violations"] += 1
        if verdict.gap:
            worker.counts["gaps"] += 1
        if verdict.duplicate:
            worker.counts["duplicate_frames"] += 1
            return
        worker.counts["delivered"] += 1
        try:
            scheduled = float(rest.partition(" ")[0])
        except ValueError:
            return
        latency = time.time() - scheduled
        if steady and self.kind == "normal":
            worker.record("live", latency)
        else:
            worker.record("backfill", latency)

    def _send_ok(self, frame: dict[str, Any]) -> None:
        worker = self.worker
        message = frame["message"]
        conversation = message["conversation_id"]
        seq = int(message["seq"])
        worker.registry.observe(conversation, seq, message["message_id"], frame["client_msg_id"])
        self.tracker.own(conversation, seq)
        if seq > worker.acked.get(conversation, 0):
            worker.acked[conversation] = seq
        pending = self.pending.pop(frame["client_msg_id"], None)
        if pending is not None:
            worker.counts["send_ok"] += 1
            worker.record("send_ok", time.time() - pending[2])


async def read_commands() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def main() -> None:
    commands = await read_commands()
    config = msgspec.json.decode(await commands.readline(), type=WorkerConfig)
    worker = Worker(config)
    local = (worker.source_ip, 0) if worker.source_ip else None
    connector = aiohttp.TCPConnector(limit=0, local_addr=local)
    async with aiohttp.ClientSession(connector=connector) as session:
        worker.session = session
        ticker = asyncio.create_task(worker._ticker())
        started = time.monotonic()
        await worker.connect_all()
        emit(Ready(worker.index, worker.connected(), round(time.monotonic() - started, 2)))
        while line := await commands.readline():
            match command_decoder.decode(line):
                case PhaseCommand(rate, seconds, churn_per_min):
                    emit(await worker.phase(rate, seconds, churn_per_min))
                case VerifyCommand(expected):
                    emit(await worker.verify(expected))
                case ExitCommand():
                    break
        ticker.cancel()
        emit(worker.tick())
        await worker.close()
    emit(Done(worker.index))


if __name__ == "__main__":
    uvloop.run(main())
