"""One WebSocket client of a load-generator worker: its connection loop (reconnects, re-sends,
token renewal and rotation), its sends, and the check of every frame it reads."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec

from realchat.contract.close_codes import CloseCode
from realchat.loadtest.renewal import TokenLifetime, needs_renewal, rotation_at
from realchat.loadtest.tracking import ClientTracker

if TYPE_CHECKING:
    from realchat.loadtest.worker import Worker


def close_reason(code: int | None) -> str:
    """A close's label in the report: the contract's name for its code (`going_away`,
    `slow_consumer`, ...)."""
    if code is None:
        return "abnormal"
    if code == 1000:
        return "server_closed"
    try:
        return CloseCode(code).name.lower()
    except ValueError:
        return f"close_{code}"


PADDING = "x" * 60
#: Why a client closes its own session: churn, or moving to a renewed token.
OWN_CLOSES = frozenset({"churn", "token_rotation"})
#: Draws each session's rotation time (`renewal.rotation_at`).
ROTATION_RNG = random.Random()


class UserInfo:
    """A user of the population as its devices share it: the token they connect with."""

    def __init__(
        self, username: str, password: str, user_id: str, conversations: list[str], token: str
    ) -> None:
        self.username = username
        self.password = password
        self.user_id = user_id
        self.conversations = conversations
        self.renewing = asyncio.Lock()
        self.take(token)

    def take(self, token: str) -> None:
        self.token = token
        self.lifetime = TokenLifetime.of(token)


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
        #: Why this client is closing its own session ("churn", "token_rotation"), if it is.
        self.leaving: str | None = None
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
        if self._leave("churn"):
            self.worker.counts["churned"] += 1

    def _rotate(self) -> None:
        """Move to a renewed token before this session's runs out (`renewal`)."""
        self._leave("token_rotation")

    def _leave(self, reason: str) -> bool:
        """Close the session for `reason` (one of `OWN_CLOSES`); False if there is none open
        or it is closing already."""
        ws = self.ws
        if ws is None or self.leaving is not None:
            return False
        self.leaving = reason
        asyncio.create_task(ws.close())  # noqa: RUF006 - the session loop notices the end
        return True

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
            own = reason in OWN_CLOSES
            await asyncio.sleep(random.uniform(0.2, 1.0) if own else random.uniform(0.5, 2.0))

    async def _session(self) -> str:
        worker = self.worker
        assert worker.session is not None
        if needs_renewal(self.user.lifetime, time.time()):
            await worker.renew_token(self.user, self.user.token)
        token, lifetime = self.user.token, self.user.lifetime
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
        self.leaving = None
        rotation = asyncio.get_running_loop().call_later(
            max(0.0, rotation_at(lifetime, ROTATION_RNG) - time.time()), self._rotate
        )
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
            rotation.cancel()
        if self.leaving is not None:
            return self.leaving
        code = ws.close_code
        if code == CloseCode.UNAUTHORIZED:
            await worker.renew_token(self.user, token)
        return close_reason(code)

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
