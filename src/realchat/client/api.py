"""`RealChatClient`: the public face of the SDK (REST helpers + the live WebSocket session).

    client = await RealChatClient.login("http://127.0.0.1:8080", "alice", "correct horse")
    async with client:
        sent = await client.send(conversation_id, "hello")
        async for message in client.messages():
            ...

What the application can rely on (see docs/client-sdk.md for the limits):

- `send()` completes exactly once: with the stored `Message` (from its `send_ok`), or with the
  typed error the server answered, or `SendTimeout`. Across reconnects the same frame (same
  `client_msg_id`) is written again until a reply comes, and the server stores it once.
- `messages()` yields every message of the user's conversations once per
  `(conversation_id, seq)`, in `seq` order per conversation, without gaps, across reconnects,
  including the client's own sends (their `send_ok` counts as having the message).
- The client reconnects by itself (jittered exponential backoff) and syncs after every
  (re)connect. Each attempt presents the current token: a client from `login()` (or given a
  `token_provider`) renews it before it expires and once after a refusal (the server closes a
  WebSocket with 4001 when its token expires or is revoked); only a refusal that a renewal does
  not cure (close 4001, HTTP 401) stops it, with `Unauthorized`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Self

import aiohttp
import structlog

from realchat.backoff import Backoff
from realchat.client.connection import Connection
from realchat.client.errors import ClientClosed, Unauthorized
from realchat.client.events import Event
from realchat.client.options import ClientOptions
from realchat.client.ordering import Ordering
from realchat.client.rest import (
    Conversation,
    Device,
    HistoryPage,
    NotificationSettings,
    RestApi,
    User,
)
from realchat.client.session import Session
from realchat.client.tokens import TokenProvider, TokenSource, credentials_provider
from realchat.contract.frames import Message
from realchat.contract.limits import DEFAULT_HISTORY_LIMIT

log = structlog.get_logger(__name__)


class RealChatClient:
    """One user's connection to RealChat. Use as an async context manager (or `start()` and
    `close()`); REST helpers work without starting the WebSocket side."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        token_provider: TokenProvider | None = None,
        token_expires_in: float | None = None,
        options: ClientOptions | None = None,
        positions: Mapping[str, int] | None = None,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        """`token`: the access token; `token_provider`: where to get a new one (called when
        there is none yet, when `token_expires_in` seconds from now or the provider's own
        `expires_in` run out, and once after a refusal). Without a provider the token is fixed
        and its refusal is final.

        `positions`: the highest contiguous seq the application already has per conversation
        (what `positions()` returned last time). None: it has nothing, and the first
        connection syncs from the server's acknowledged cursors. With positions, conversations
        missing from them are synced from their first message."""
        self.base_url = base_url.rstrip("/")
        self.options = options or ClientOptions()
        self.tokens = TokenSource(token, token_provider, expires_in=token_expires_in)
        self._http = http
        self._owns_http = http is None
        self._ordering = Ordering(
            gap_timeout_s=self.options.gap_timeout_s,
            hold_back_cap=self.options.hold_back_cap,
            positions=positions,
        )
        self._rest: RestApi | None = None
        self._session: Session | None = None
        self._connection: Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        #: The account's REST client and username, for a client from `login()`.
        self._account: tuple[RestApi, str] | None = None

    # -- accounts (no client needed) -------------------------------------------------------------

    @classmethod
    async def login(
        cls,
        base_url: str,
        username: str,
        password: str,
        *,
        options: ClientOptions | None = None,
        positions: Mapping[str, int] | None = None,
        http: aiohttp.ClientSession | None = None,
    ) -> Self:
        """`POST /v1/tokens`, then a client (not started yet) holding the access token. The
        credentials stay in memory: the client logs in again when the token is about to expire
        or is refused, so reconnects keep working however long it runs."""
        session = http or aiohttp.ClientSession()
        try:
            timeout = (options or ClientOptions()).request_timeout_s
            accounts = RestApi(session, base_url, timeout_s=timeout)
            token = await accounts.token(username, password)
        except BaseException:
            if http is None:
                await session.close()
            raise
        client = cls(
            base_url,
            token.access_token,
            token_provider=credentials_provider(accounts, username, password),
            token_expires_in=token.expires_in,
            options=options,
            positions=positions,
            http=session,
        )
        client._owns_http = http is None
        client._account = (accounts, username)
        return client

    @staticmethod
    async def register(
        base_url: str, username: str, password: str, *, http: aiohttp.ClientSession | None = None
    ) -> User:
        """`POST /v1/users`: a new account (`ApiError` 409 `username_taken`, 422 ...)."""
        async with contextlib.AsyncExitStack() as stack:
            if http is None:
                http = await stack.enter_async_context(aiohttp.ClientSession())
            return await RestApi(http, base_url).register(username, password)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start connecting (in the background; `wait_ready()` waits for the first sync)."""
        if self._closed:
            raise ClientClosed("the client was closed")
        if self._connection is not None:
            return
        session = self._session = Session(self._ordering, self._api(), self.options)
        o = self.options
        self._connection = Connection(
            self._http_session(),
            self.base_url + "/v1/ws",
            self.tokens,
            session,
            backoff=Backoff(o.reconnect_initial_s, o.reconnect_max_s),
            heartbeat_s=o.heartbeat_s,
            connect_timeout_s=o.connect_timeout_s,
            max_frames_per_s=o.max_frames_per_s,
        )
        runner = asyncio.create_task(self._connection.run(), name="realchat-connection")
        runner.add_done_callback(self._connection_ended)
        self._tasks = [
            runner,
            asyncio.create_task(session.run_gap_timer(), name="realchat-gap-timer"),
            asyncio.create_task(session.run_acks(), name="realchat-acks"),
            asyncio.create_task(session.run_paused_syncs(), name="realchat-paused-syncs"),
        ]

    def _connection_ended(self, task: asyncio.Task[None]) -> None:
        failure = None if task.cancelled() else task.exception()
        if failure is not None and not self._closed:
            log.warning("realchat client stopped", error=repr(failure))
        if self._session is not None:
            self._session.finish(failure)

    async def close(self) -> None:
        """Close the WebSocket (pending sends fail with `ClientClosed`; iterators end)."""
        if self._closed:
            return
        self._closed = True
        if self._session is not None:
            self._session.finish(None)
        if self._connection is not None:
            await self._connection.stop()
        if self._tasks:
            # Stopped: it ends at once, unless it was in the middle of connecting.
            await asyncio.wait(self._tasks[:1], timeout=1.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._owns_http and self._http is not None:
            await self._http.close()

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Until connected and synced (raises what stopped the client, e.g. `Unauthorized`)."""
        async with asyncio.timeout(timeout_s):
            await self._live().wait_ready()

    @property
    def ready(self) -> bool:
        return self._session is not None and self._session.ready

    @property
    def connection(self) -> Connection:
        """The WebSocket machinery (counts, `abort()` to simulate a network failure)."""
        if self._connection is None:
            raise RuntimeError("the client is not started")
        return self._connection

    @property
    def user_id(self) -> str | None:
        """The logged-in user (from the token, or the server's `hello`)."""
        if self._session is not None and self._session.user_id is not None:
            return self._session.user_id
        token = self.tokens.token
        return None if token is None else _token_subject(token)

    @property
    def ordering(self) -> Ordering:
        """The per-conversation ordering state (positions, held messages, counters)."""
        return self._ordering

    @property
    def gap_syncs(self) -> int:
        """Syncs sent because a gap outlived `gap_timeout_s` (a message was held back waiting
        for a lower seq that did not come by itself)."""
        return 0 if self._session is None else self._session.gap_syncs

    @property
    def paused_syncs(self) -> int:
        """Syncs sent because the server paused live delivery (its event bus was away)."""
        return 0 if self._session is None else self._session.paused_syncs

    @property
    def rate_limited_retries(self) -> int:
        """Sends written again because the server answered `rate_limited`."""
        return 0 if self._session is None else self._session.rate_limited_retries

    @property
    def events_dropped(self) -> int:
        """Events dropped because `events()` was not read fast enough (oldest first)."""
        return 0 if self._session is None else self._session.events_dropped

    def positions(self) -> dict[str, int]:
        """Per conversation, the highest seq up to which `messages()` handed everything over:
        persist it and pass it as `positions` to the next client to resume from there."""
        if self._session is None:
            return self._ordering.positions()
        return self._session.positions()

    # -- the live session --------------------------------------------------------------------------

    async def send(
        self,
        conversation_id: str,
        content: str,
        *,
        client_msg_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Message:
        """Send a message; returns it as stored (with its `seq`). Waits through reconnects.

        `client_msg_id` defaults to a new uuid4 hex; pass one to retry a send whose outcome is
        unknown (`SendTimeout`). Raises a `SendError` subclass for the server's refusals
        (`IdempotencyConflict`, `RateLimited`, `NotAMember`, ...), `SendTimeout` after
        `timeout_s` (default `options.send_timeout_s`), `ClientClosed` or `Unauthorized` if
        the client stops first."""
        timeout = self.options.send_timeout_s if timeout_s is None else timeout_s
        msg_id = client_msg_id or uuid.uuid4().hex
        return await self._live().send(conversation_id, content, msg_id, timeout)

    async def ack(self, conversation_id: str, seq: int) -> None:
        """Acknowledge everything up to `seq` (the server's delivered/read cursor, shown to the
        other members as a receipt). Written now if connected, else after the reconnect."""
        await self._live().ack(conversation_id, seq)

    async def typing(self, conversation_id: str, typing: bool = True) -> None:
        """Tell the conversation's members that this user is typing (repeat every
        `TYPING_REPEAT_S` while it lasts) or stopped. Ephemeral: dropped while disconnected."""
        await self._live().typing(conversation_id, typing)

    def messages(self) -> AsyncIterator[Message]:
        """Every message once, in order per conversation, without gaps (see the module doc).
        Ends when the client is closed; raises what stopped it otherwise. Meant for a single
        consumer (two iterators would share the stream, each message going to one of them)."""
        return self._live().messages()

    def events(self) -> AsyncIterator[Event]:
        """Receipts, presence, server notices, connects and disconnects, in arrival order."""
        return self._live().events()

    # -- REST --------------------------------------------------------------------------------------

    async def user_by_username(self, username: str) -> User:
        return await self._api().user_by_username(username)

    async def create_conversation(
        self, member_ids: list[str], title: str | None = None
    ) -> Conversation:
        """A new conversation with the caller and `member_ids` (its messages are delivered from
        the first one)."""
        created = await self._api().create_conversation(member_ids, title)
        self._ordering.start_at(created.conversation_id, 0, asyncio.get_running_loop().time())
        return created

    async def conversations(self) -> list[Conversation]:
        return await self._api().conversations()

    async def add_members(self, conversation_id: str, user_ids: list[str]) -> Conversation:
        return await self._api().add_members(conversation_id, user_ids)

    async def rename(self, conversation_id: str, title: str) -> Conversation:
        """Set the conversation's title; every member gets a `ConversationUpdate` event."""
        return await self._api().rename(conversation_id, title)

    async def edit_message(
        self,
        conversation_id: str,
        seq: int,
        content: str,
        *,
        client_change_id: str | None = None,
    ) -> Message:
        """Edit one's own message; returns it as edited (`version` + 1). `client_change_id`
        defaults to a new uuid4 hex: pass one to retry an edit whose outcome is unknown (the
        same id and content is the same edit, never applied twice)."""
        change_id = client_change_id or uuid.uuid4().hex
        return await self._api().edit_message(conversation_id, seq, content, change_id)

    async def delete_message(self, conversation_id: str, seq: int) -> Message:
        """Delete one's own message: it stays at its seq as a tombstone (`deleted`, no content).
        Idempotent."""
        return await self._api().delete_message(conversation_id, seq)

    async def history(
        self, conversation_id: str, after_seq: int = 0, limit: int = DEFAULT_HISTORY_LIMIT
    ) -> HistoryPage:
        """Messages after `after_seq` (at most `limit`, 1 to `MAX_HISTORY_LIMIT`), straight from
        the server: not part of the `messages()` stream."""
        return await self._api().history(conversation_id, after_seq, limit)

    # -- push notifications (docs/notifications.md) ----------------------------------------------

    async def register_device(self, platform: str, token: str) -> Device:
        """Push notifications for this user go to `token` too, while the app is closed."""
        return await self._api().register_device(platform, token)

    async def devices(self) -> list[Device]:
        return await self._api().devices()

    async def unregister_device(self, device_id: str) -> None:
        await self._api().unregister_device(device_id)

    async def notification_settings(self) -> NotificationSettings:
        return await self._api().notification_settings()

    async def set_do_not_disturb(self, on: bool) -> NotificationSettings:
        return await self._api().set_do_not_disturb(on)

    async def set_muted(self, conversation_id: str, muted: bool) -> None:
        await self._api().set_muted(conversation_id, muted)

    # -- membership and sessions -----------------------------------------------------------------

    async def leave(self, conversation_id: str) -> None:
        """Leave the conversation: nothing of it reaches this user from now on."""
        user_id = self.user_id or _token_subject(await self.tokens.current())
        if user_id is None:
            raise Unauthorized("the access token names no user")
        await self._api().remove_member(conversation_id, user_id)

    async def remove_member(self, conversation_id: str, user_id: str) -> None:
        """As the conversation's creator, take a member out of it."""
        await self._api().remove_member(conversation_id, user_id)

    async def block(self, user_id: str) -> None:
        """The user can no longer add this one to conversations; no presence either way."""
        await self._api().block(user_id)

    async def unblock(self, user_id: str) -> None:
        await self._api().unblock(user_id)

    async def blocked(self) -> list[str]:
        return await self._api().blocked()

    async def logout(self) -> None:
        """Revoke every access token of the user (every device is logged out), then close."""
        await self._api().logout()
        await self.close()

    async def change_password(self, current_password: str, new_password: str) -> None:
        """Change the password. Every token of the user is revoked: a client from `login()`
        logs in again with the new password by itself (its connection reconnects); other
        devices must log in again."""
        await self._api().change_password(current_password, new_password)
        if self._account is not None:
            accounts, username = self._account
            self.tokens.use_provider(credentials_provider(accounts, username, new_password))

    # -- plumbing ----------------------------------------------------------------------------------

    def _http_session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    def _api(self) -> RestApi:
        if self._closed:
            raise ClientClosed("the client was closed")
        if self._rest is None:
            self._rest = RestApi(
                self._http_session(),
                self.base_url,
                timeout_s=self.options.request_timeout_s,
                tokens=self.tokens,
            )
        return self._rest

    def _live(self) -> Session:
        if self._session is None:
            raise RuntimeError("the client is not started: use `async with client` or start()")
        return self._session


def _token_subject(token: str) -> str | None:
    """The `sub` claim of a JWT, read without verifying it (the server verifies)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else None
