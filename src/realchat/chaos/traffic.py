"""Steady traffic for the chaos run: users with two devices each (SDK clients through the public
entrypoint), one-to-one conversations and a group, one sender per user at a fixed rate.

Everything the application sees is recorded (`history`): each acknowledged send, each message
as `messages()` hands it over, each connection made ready or lost. A send that times out
across a fault is retried with the same `client_msg_id`, as an application would; nothing here
decides whether the run went well.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from dataclasses import dataclass

import aiohttp
import structlog

from realchat.chaos.history import (
    ClientSummary,
    Edited,
    HistoryWriter,
    Link,
    Received,
    Refused,
    Sent,
    Updated,
)
from realchat.client import (
    ApiError,
    ClientOptions,
    Connected,
    Disconnected,
    MessageUpdate,
    RealChatClient,
    SendError,
    SendTimeout,
)
from realchat.contract.error_codes import ErrorCode

log = structlog.get_logger(__name__)

PASSWORD = "chaos password 1"
#: Refusals that say "not now" (the chat service is away, too many sends): retried after a pause
#: with the same client_msg_id. A send cut off mid-call may have been stored; the retry tells.
RETRIABLE = frozenset({ErrorCode.CHAT_UNAVAILABLE, ErrorCode.RATE_LIMITED})
RETRY_PAUSE_S = 0.2
#: Every EDIT_EVERY-th message a user sends is then edited by them (versions under faults).
EDIT_EVERY = 3
#: Attempts of one edit while the service is away (the same client_change_id each time).
EDIT_ATTEMPTS = 100
#: Reconnect quickly: faults are short, and recovery time is what is measured.
#: Events are buffered generously: after a fault, catch-ups and the bus's backlog come in bursts,
#: and the SDK drops the oldest events beyond the buffer (counted in each client's summary).
OPTIONS = ClientOptions(
    reconnect_initial_s=0.2,
    reconnect_max_s=2.0,
    send_timeout_s=20.0,
    max_buffered_events=100_000,
)


@dataclass
class Device:
    name: str
    user_id: str
    client: RealChatClient


class Traffic:
    def __init__(
        self,
        base_url: str,
        history: HistoryWriter,
        users: int = 6,
        devices_per_user: int = 2,
        sends_per_s_per_user: float = 3.0,
    ) -> None:
        self._base = base_url
        self._history = history
        self._users = users
        self._devices_per_user = devices_per_user
        self._interval_s = 1 / sends_per_s_per_user
        self._http = aiohttp.ClientSession()
        self.devices: list[Device] = []
        self.conversations: list[str] = []
        self._senders: list[asyncio.Task[None]] = []
        self._readers: list[asyncio.Task[None]] = []
        self._sending = asyncio.Event()
        self.send_failures = 0
        self.send_retries = 0
        self.edit_failures = 0

    async def start(self) -> None:
        """Accounts, conversations (pairs and one group of everyone), connected devices."""
        run = uuid.uuid4().hex[:6]
        names = [f"chaos{run}_{n}" for n in range(self._users)]
        for name in names:
            await RealChatClient.register(self._base, name, PASSWORD, http=self._http)
        owners: list[RealChatClient] = []
        for name in names:
            for d in range(self._devices_per_user):
                client = await RealChatClient.login(
                    self._base, name, PASSWORD, options=OPTIONS, http=self._http
                )
                await client.start()
                user_id = client.user_id
                assert user_id is not None
                self.devices.append(Device(f"{name}/{d}", user_id, client))
                if d == 0:
                    owners.append(client)
        user_ids = [d.user_id for d in self.devices[:: self._devices_per_user]]
        for first in range(0, self._users - 1, 2):
            made = await owners[first].create_conversation([user_ids[first + 1]], title="pair")
            self.conversations.append(made.conversation_id)
        group = await owners[0].create_conversation(user_ids[1:], title="everyone")
        self.conversations.append(group.conversation_id)
        for device in self.devices:
            await device.client.wait_ready(timeout_s=60)
            self._readers.append(asyncio.create_task(self._read(device)))
            self._readers.append(asyncio.create_task(self._read_updates(device)))
        for index, device in enumerate(self.devices[:: self._devices_per_user]):
            self._senders.append(asyncio.create_task(self._send(device, index)))
        self._sending.set()

    async def _send(self, device: Device, index: int) -> None:
        """User `index` writes to its pair (index // 2) and to the group, alternately."""
        mine = [self.conversations[index // 2], self.conversations[-1]]
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        for n in itertools.count():
            await self._sending.wait()
            conversation = mine[n % len(mine)]
            client_msg_id = f"{device.name}-{n}"
            started = time.time()
            while True:
                try:
                    sent = await device.client.send(
                        conversation, f"{device.name} #{n}", client_msg_id=client_msg_id
                    )
                    break
                except SendTimeout:
                    continue  # the same id again: stored once, whatever happened
                except SendError as error:
                    retried = error.code in RETRIABLE
                    self._history.write(
                        Refused(
                            device.name, conversation, client_msg_id, error.code, time.time(),
                            retried,
                        )
                    )  # fmt: skip
                    if retried:
                        self.send_retries += 1
                        await asyncio.sleep(RETRY_PAUSE_S)
                        continue  # as an application would: the same id, so stored once
                    self.send_failures += 1
                    log.warning("chaos send refused", code=error.code, client=device.name)
                    sent = None
                    break
            if sent is not None:
                self._history.write(
                    Sent(
                        device.name, conversation, client_msg_id, sent.seq, sent.message_id,
                        started, time.time(),
                    )
                )  # fmt: skip
                if n % EDIT_EVERY == EDIT_EVERY - 1:
                    await self._edit(device, conversation, sent.seq, f"{client_msg_id}-edit")
            next_at += self._interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _edit(self, device: Device, conversation: str, seq: int, change_id: str) -> None:
        """Edit the message just sent, retrying the same edit (same id) while the service is
        away: it is applied once, whatever happened to earlier attempts."""
        for _ in range(EDIT_ATTEMPTS):
            try:
                edited = await device.client.edit_message(
                    conversation, seq, f"{device.name} edited #{seq}", client_change_id=change_id
                )
            except (ApiError, aiohttp.ClientError, TimeoutError) as error:
                if isinstance(error, ApiError) and error.status < 500:
                    break
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            self._history.write(Edited(device.name, conversation, seq, edited.version, time.time()))
            return
        self.edit_failures += 1
        log.warning("chaos edit failed", client=device.name, conversation=conversation, seq=seq)

    async def _read_updates(self, device: Device) -> None:
        async for event in device.client.events():
            if isinstance(event, MessageUpdate):
                m = event.message
                self._history.write(
                    Updated(device.name, m.conversation_id, m.seq, m.version, time.time())
                )
            elif isinstance(event, Connected):
                self._history.write(
                    Link(device.name, "ready", time.time(), session_id=event.session_id)
                )
            elif isinstance(event, Disconnected):
                self._history.write(
                    Link(device.name, "lost", time.time(), code=event.code, reason=event.reason)
                )

    async def _read(self, device: Device) -> None:
        async for message in device.client.messages():
            self._history.write(
                Received(
                    device.name, message.conversation_id, message.seq, message.message_id,
                    time.time(), message.version,
                )
            )  # fmt: skip

    async def stop_sending(self) -> None:
        for task in self._senders:
            task.cancel()
        for task in self._senders:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def positions(self) -> dict[str, dict[str, int]]:
        return {d.name: d.client.positions() for d in self.devices}

    async def close(self) -> None:
        """Record each device's counters and disconnect (safe to call twice)."""
        if self._http.closed:
            return
        for device in self.devices:
            self._history.write(
                ClientSummary(
                    device.name,
                    device.user_id,
                    device.client.ordering.duplicates,
                    max(0, device.client.connection.opened - 1),
                    device.client.events_dropped,
                )
            )
            await device.client.close()
        for task in self._readers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._http.close()
