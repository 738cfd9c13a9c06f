"""The client's side of the at-least-once contract, driven by `Connection` (one instance lives
as long as the client, across every WebSocket it opens).

Per connection, after `hello`, the handshake:

1. the first connection of a client given no positions sends a plain `sync` (everything after
   the server's acknowledged cursors) and takes each conversation's start from it (a
   *baseline*, see `ordering`). Every later connection (or the first, when the application
   passed `positions`) first lists the user's conversations over REST, adds the ones it does
   not know at position 0 (a conversation that appeared while the client was away is delivered
   from its first message), then sends `sync` with its highest contiguous seq in each;
2. it waits for the `sync_done`(s) (the handshake fails, and the client reconnects, if the
   server sends nothing at all for `handshake_timeout_s`);
3. then it is live: sends that have no reply yet are written again with the same frame (same
   `client_msg_id`, so the server stores each once), pending acks go out.

Frames: `message` and the message of every `send_ok` go through `Ordering` (dedup, hold-back)
into the buffer that `messages()` reads; a `send_ok` or `error` with a pending `client_msg_id`
completes that send (once: later replies for it only feed the ordering), except `rate_limited`:
that frame was refused before anything was stored, so the same frame is written again after a
backoff, for up to `rate_limited_retry_s` (a re-send after a reconnect may hit the per-user
limit although an earlier attempt was stored: only a reply to the same id can tell);
`receipt`, `presence`, unmatched `error`s and connection changes go to `events()`. A gap that
outlives `gap_timeout_s` makes the gap timer send a `sync` for that conversation from its
position.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping

import aiohttp
import structlog

from realchat.client.acks import Acks
from realchat.client.change_counters import ChangeCounters
from realchat.client.connection import Link, LinkClosed
from realchat.client.errors import ClientClosed, RealChatError, SendTimeout, send_error
from realchat.client.events import Connected, Disconnected, Event, ServerNotice
from realchat.client.feed import Feed
from realchat.client.options import ClientOptions
from realchat.client.ordering import Ordering
from realchat.client.pending import PendingSend
from realchat.client.rest import RestApi
from realchat.contract.error_codes import ErrorCode
from realchat.contract.frames import (
    ConversationUpdateFrame,
    ErrorFrame,
    HelloFrame,
    LiveFrame,
    MemberFrame,
    Message,
    MessageFrame,
    MessageUpdateFrame,
    PresenceFrame,
    ReadFrame,
    ReceiptFrame,
    SendFrame,
    SendOkFrame,
    ServerFrame,
    SyncDoneFrame,
    SyncFrame,
    TypingFrame,
    UserTypingFrame,
)
from realchat.contract.limits import MAX_CLIENT_MSG_ID_CHARS, MAX_CONTENT_CHARS

log = structlog.get_logger(__name__)

#: Conversations per `sync` frame (the server refuses frames above 64 KiB).
SYNC_CHUNK = 500

#: Errors that refuse a whole `sync` (no `sync_done` follows): `sync_failed` when its history
#: could not be read, `chat_unavailable` when the user's conversations could not even be listed.
#: During a handshake nothing but its syncs is written, so an uncorrelated one of these answers
#: them. Missing the second kept a chaos run's clients unready for 127 s: live frames flowed,
#: so the handshake never looked silent, and their sends were never written.
_SYNC_REFUSALS = frozenset({ErrorCode.SYNC_FAILED, ErrorCode.CHAT_UNAVAILABLE})


class Session:
    def __init__(self, ordering: Ordering, rest: RestApi, options: ClientOptions) -> None:
        self._ordering = ordering
        self._rest = rest
        self._options = options
        self.user_id: str | None = None
        self.session_id: str | None = None
        self._link: Link | None = None
        self._ready = False
        self._state_changed = asyncio.Event()
        self._finished = False
        self._failure: BaseException | None = None
        # handshake
        self._handshake_syncs_left = 0
        self._handshake_baseline = False
        self._handshake_link: Link | None = None
        #: The server refused a sync of the handshake (`sync_failed`): its `sync_done` will
        #: never come, though live frames do.
        self._handshake_refused: str | None = None
        self._progress = asyncio.Event()
        # sends and acks
        self._pending: dict[str, PendingSend] = {}
        self._resends: set[asyncio.Task[None]] = set()
        #: Sends written again because the server answered `rate_limited`.
        self.rate_limited_retries = 0
        #: Gap syncs sent (a message held back longer than `gap_timeout_s`).
        self.gap_syncs = 0
        self._acks = Acks()
        self._gap_wake = asyncio.Event()
        #: The server paused live delivery (`live` frame): sync by polling until it resumes.
        self._live_paused = False
        self._live_changed = asyncio.Event()
        #: Syncs sent while live delivery was paused.
        self.paused_syncs = 0
        # what the application reads
        self._inbox: Feed[Message] = Feed()
        #: Conversations whose messages were not taken in because the inbox was full.
        self._overflowed: set[str] = set()
        self._counters = ChangeCounters()
        self._events: Feed[Event] = Feed(options.max_buffered_events)

    # -- state ---------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Connected and synced: sends go out at once."""
        return self._ready

    async def wait_ready(self) -> None:
        while not self._ready:
            self._raise_if_finished()
            self._state_changed.clear()
            await self._state_changed.wait()

    def finish(self, failure: BaseException | None) -> None:
        """The client stopped (closed by the application, or `failure`): fail what waits."""
        if self._finished:
            return
        self._finished = True
        self._failure = failure
        self._ready = False
        for pending in self._pending.values():
            if not pending.reply.done():
                pending.reply.set_exception(failure or ClientClosed("the client was closed"))
                pending.reply.exception()  # retrieved here: the sender may be gone already
        self._pending.clear()
        for task in self._resends:
            task.cancel()
        self._state_changed.set()
        self._inbox.finish(failure)
        self._events.finish(failure)

    def _raise_if_finished(self) -> None:
        if self._finished:
            raise self._failure or ClientClosed("the client was closed")

    def positions(self) -> dict[str, int]:
        """Per conversation, the highest seq such that it and everything below it were handed
        to the application by `messages()` (what to persist and pass back as `positions`)."""
        positions = self._ordering.positions()
        for message in self._inbox:  # released, not yet taken: the first one bounds
            cid = message.conversation_id
            positions[cid] = min(positions.get(cid, message.seq), message.seq - 1)
        return positions

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- Handler: driven by the Connection ------------------------------------------------------

    async def opened(self, link: Link, hello: HelloFrame) -> None:
        self.user_id, self.session_id = hello.user_id, hello.session_id
        self._link = link
        frames: list[SyncFrame]
        self._overflowed.clear()  # the handshake's sync asks for them again
        if self._ordering.needs_baseline:
            self._ordering.begin_baseline()
            self._handshake_baseline = True
            frames = [SyncFrame()]
        else:
            self._handshake_baseline = False
            for conversation in await self._rest.conversations():
                self._deliver(self._ordering.start_at(conversation.conversation_id, 0, self._now()))
            frames = [
                SyncFrame(chunk, self._counters.for_sync(chunk))
                for chunk in _chunks(self._ordering.positions())
            ]
        self._handshake_syncs_left = len(frames)
        self._handshake_link = link
        self._handshake_refused = None
        for frame in frames:
            await link.send(frame)
        if not frames:
            self._go_live()
        await self._await_handshake()
        self._acks.wake.set()
        with contextlib.suppress(LinkClosed):  # then the next connection does it
            for pending in list(self._pending.values()):  # oldest first
                if pending.link is link or pending.reply.done():
                    continue
                pending.link = link
                await link.send(pending.frame)
        self._gap_wake.set()

    def _go_live(self) -> None:
        """The handshake's last `sync_done` (called by the reader, so that no later frame's
        event comes before `Connected`)."""
        link = self._handshake_link
        if link is None or self.user_id is None or self.session_id is None:
            return
        self._ready = True
        self._state_changed.set()
        self._emit(Connected(self.user_id, self.session_id, link.number))

    async def _await_handshake(self) -> None:
        """Until the last `sync_done`; raises (this connection fails, the next one syncs again)
        if the server goes silent or refuses a sync. Without the latter, a client whose sync
        found the chat service down waited for good: the live frames that followed kept the
        silence timer from firing, and its sends were never written (a chaos run's 940 s)."""
        while not self._ready:
            if self._handshake_refused is not None:
                raise ConnectionError(f"the handshake's sync failed: {self._handshake_refused}")
            self._progress.clear()
            try:
                async with asyncio.timeout(self._options.handshake_timeout_s):
                    await self._progress.wait()
            except TimeoutError:
                raise TimeoutError("no sync_done: the server went silent") from None

    async def received(self, frame: ServerFrame) -> None:
        self._progress.set()
        now = self._now()
        gap_timer = self._ordering.next_due()
        match frame:
            case MessageFrame(message=message):
                self._take_in(message, now)
            case SendOkFrame(client_msg_id=client_msg_id, message=message):
                pending = self._pending.pop(client_msg_id, None)
                if pending is not None and not pending.reply.done():
                    pending.reply.set_result(message)
                self._take_in(message, now)
            case SyncDoneFrame(positions=positions, changes=changes):
                self._counters.told(changes)
                if self._handshake_syncs_left > 0:
                    self._handshake_syncs_left -= 1
                    if self._handshake_baseline:
                        self._deliver(self._ordering.end_baseline(positions, now))
                        self._handshake_baseline = False
                        self._counters.baseline_ended(self._ordering.positions())
                    else:
                        self._ordering.sync_done(positions, now)
                    if self._handshake_syncs_left == 0:
                        self._go_live()
                else:
                    self._ordering.sync_done(positions, now)
            case ErrorFrame(code=code, message=text, client_msg_id=client_msg_id):
                if code in _SYNC_REFUSALS and not client_msg_id and self._handshake_syncs_left:
                    self._handshake_refused = f"{code}: {text}"
                pending = self._pending.get(client_msg_id) if client_msg_id else None
                if pending is None or not client_msg_id or pending.reply.done():
                    self._emit(ServerNotice(code, text, client_msg_id))
                elif not (code == ErrorCode.RATE_LIMITED and self._retry_later(pending, now)):
                    del self._pending[client_msg_id]
                    pending.reply.set_exception(send_error(code, text, client_msg_id))
            case LiveFrame(paused=paused):
                self._live_paused = paused
                self._live_changed.set()
                self._emit(frame)
            case (
                ReceiptFrame()
                | ReadFrame()
                | PresenceFrame()
                | MemberFrame()
                | UserTypingFrame()
                | MessageUpdateFrame()
                | ConversationUpdateFrame()
            ):
                self._emit(frame)
            case _:  # hello (only once), pong (never asked for)
                pass
        if self._ordering.next_due() != gap_timer:
            self._gap_wake.set()

    def _take_in(self, message: Message, now: float) -> None:
        """Into the ordering, unless the inbox is full: then the message is left out (not
        counted as had) and its conversation is synced again once the application has read
        half of the inbox. Conversations still waiting for their baseline always take it in
        (it is held, not delivered, so it costs no inbox room)."""
        cid = message.conversation_id
        position = self._ordering.position(cid)
        if position is not None and message.seq <= position and message.version > 1:
            # Handed over already, and changed since (a sync reads the current state): the
            # application gets the change like a live one.
            self._emit(MessageUpdateFrame(message))
        full = cid in self._overflowed or len(self._inbox) >= self._options.max_buffered_messages
        if full and position is not None and message.seq > position:
            self._overflowed.add(cid)
            return
        self._deliver(self._ordering.accept(message, now))

    def disconnected(self, event: Disconnected) -> None:
        self._live_paused = False  # the next connection says so again if it still is
        self._link = None
        self._handshake_link = None
        self._ready = False
        self._handshake_syncs_left = 0
        self._state_changed.set()
        self._emit(event)

    # -- sending ---------------------------------------------------------------------------------

    async def send(
        self, conversation_id: str, content: str, client_msg_id: str, timeout_s: float | None
    ) -> Message:
        self._raise_if_finished()
        if not 1 <= len(content) <= MAX_CONTENT_CHARS:
            raise ValueError(f"content must be 1-{MAX_CONTENT_CHARS} characters")
        if not 1 <= len(client_msg_id) <= MAX_CLIENT_MSG_ID_CHARS:
            raise ValueError(f"client_msg_id must be 1-{MAX_CLIENT_MSG_ID_CHARS} characters")
        frame = SendFrame(conversation_id, client_msg_id, content)
        pending = self._pending.get(client_msg_id)
        if pending is not None and pending.frame != frame:
            raise ValueError(f"a different send with client_msg_id {client_msg_id} is pending")
        if pending is None:
            pending = PendingSend(frame, asyncio.get_running_loop().create_future())
            self._pending[client_msg_id] = pending
        pending.waiters += 1
        try:
            async with asyncio.timeout(timeout_s):
                link = self._link
                if self._ready and link is not None and pending.link is None:
                    pending.link = link
                    with contextlib.suppress(LinkClosed):  # written again after the reconnect
                        await link.send(frame)
                return await asyncio.shield(pending.reply)
        except TimeoutError:
            if pending.reply.done():  # the reply won the race against the timeout
                return pending.reply.result()
            raise SendTimeout(client_msg_id, timeout_s or 0.0) from None
        finally:
            pending.waiters -= 1
            if pending.waiters == 0 and self._pending.get(client_msg_id) is pending:
                del self._pending[client_msg_id]  # given up (timeout, cancelled): not re-sent

    def _retry_later(self, pending: PendingSend, now: float) -> bool:
        """Write a rate-limited send again after a backoff; False once its time is up."""
        delay = pending.rate_limited(now, self._options.rate_limited_retry_s)
        if delay is None:
            return False
        task = asyncio.create_task(self._resend(pending, delay))
        self._resends.add(task)
        task.add_done_callback(self._resends.discard)
        return True

    async def _resend(self, pending: PendingSend, delay: float) -> None:
        await asyncio.sleep(delay)
        link = self._link
        current = self._pending.get(pending.frame.client_msg_id) is pending
        if not current or pending.reply.done() or not self._ready or link is None:
            return  # answered, given up, or the next connection's handshake writes it
        if pending.link is link:
            return  # written by a reconnect's handshake meanwhile
        pending.link = link
        self.rate_limited_retries += 1
        with contextlib.suppress(LinkClosed):
            await link.send(pending.frame)

    async def typing(self, conversation_id: str, typing: bool) -> None:
        """Ephemeral: sent if connected and live, else dropped (the next repeat carries it)."""
        self._raise_if_finished()
        link = self._link
        if not self._ready or link is None:
            return
        with contextlib.suppress(LinkClosed):
            await link.send(TypingFrame(conversation_id, typing))

    async def ack(self, conversation_id: str, seq: int) -> None:
        self._raise_if_finished()
        self._acks.want(conversation_id, seq)
        await self._flush_acks()

    async def _flush_acks(self) -> None:
        link = self._link
        if self._ready and link is not None:  # else sent once the next connection is live
            await self._acks.flush(link)

    # -- background tasks (run by the client) ------------------------------------------------------

    async def run_acks(self) -> None:
        """Send the wanted acks: batched (one per conversation per interval) for auto-acks."""
        while True:
            await self._acks.wake.wait()
            self._acks.wake.clear()
            if self._ready:
                await asyncio.sleep(self._options.auto_ack_interval_s)  # the batching window
                await self._flush_acks()

    async def run_gap_timer(self) -> None:
        """Ask for the gaps that outlived `gap_timeout_s` (a `sync` from the position)."""
        while True:
            self._gap_wake.clear()
            timeout: float | None = None
            link = self._link
            if self._ready and link is not None:
                due = {
                    cid: seq
                    for cid, seq in self._ordering.due_syncs(self._now()).items()
                    if cid not in self._overflowed  # synced once the inbox has room
                }
                if (
                    self._overflowed
                    and len(self._inbox) <= self._options.max_buffered_messages // 2
                ):
                    for cid in self._overflowed:
                        position = self._ordering.position(cid)
                        if position is not None:
                            due[cid] = position
                    self._overflowed.clear()
                try:
                    for chunk in _chunks(due):
                        log.info("realchat gap sync", positions=chunk)
                        self.gap_syncs += 1
                        await link.send(SyncFrame(chunk, self._counters.for_sync(chunk)))
                except LinkClosed:
                    pass  # the next connection's handshake syncs everything
                next_due = self._ordering.next_due()
                if next_due is not None:
                    timeout = max(0.0, next_due - self._now())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # (3.11's wait_for can lose a cancel)
                    await self._gap_wake.wait()

    async def run_paused_syncs(self) -> None:
        """While live delivery is paused, sync every conversation every `paused_sync_s`; once
        it resumes, one more sync covers what was committed just before."""
        while True:
            await self._live_changed.wait()
            self._live_changed.clear()
            while self._live_paused:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._options.paused_sync_s):
                        await self._live_changed.wait()
                self._live_changed.clear()
                await self._sync_all()

    async def _sync_all(self) -> None:
        """Every conversation from its position, those started meanwhile included (their
        first message may be among those the paused bus did not bring)."""
        link = self._link
        if not self._ready or link is None:
            return  # the next connection's handshake syncs everything
        with contextlib.suppress(RealChatError, aiohttp.ClientError, TimeoutError):
            for conversation in await self._rest.conversations():
                self._deliver(self._ordering.start_at(conversation.conversation_id, 0, self._now()))
        with contextlib.suppress(LinkClosed):
            for chunk in _chunks(self._ordering.positions()):
                self.paused_syncs += 1
                await link.send(SyncFrame(chunk, self._counters.for_sync(chunk)))

    # -- what the application reads --------------------------------------------------------------

    @property
    def events_dropped(self) -> int:
        """Events dropped because nobody read `events()` fast enough."""
        return self._events.dropped

    def _deliver(self, messages: list[Message]) -> None:
        self._inbox.extend(messages)

    async def messages(self) -> AsyncIterator[Message]:
        async for message in self._inbox.items():
            if self._overflowed and len(self._inbox) <= self._options.max_buffered_messages // 2:
                self._gap_wake.set()  # room again: the gap timer task asks for the rest
            if self._options.auto_ack:
                self._acks.want(message.conversation_id, message.seq)
                self._acks.wake.set()
            yield message

    def events(self) -> AsyncIterator[Event]:
        return self._events.items()

    def _emit(self, event: Event) -> None:
        self._events.put(event)


def _chunks(positions: Mapping[str, int]) -> Iterator[dict[str, int]]:
    items = list(positions.items())
    for start in range(0, len(items), SYNC_CHUNK):
        yield dict(items[start : start + SYNC_CHUNK])
