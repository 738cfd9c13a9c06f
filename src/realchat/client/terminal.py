"""`realchat chat`: a small terminal client for people, on top of the SDK.

Log in, pick a conversation, see its history and then live messages; each line typed is sent.
`/quit` (or end of input) ends the chat; `/leave` leaves the conversation for good (its
creator can also remove you: the chat then ends, saying so). The password is taken from
`--password`, else $REALCHAT_PASSWORD, else a prompt. A refused send prints why
(`not sent: ...`) and the chat goes on; a client that stops (token refused for good) prints why
and exits with 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import sys
import threading
from collections.abc import Callable, Sequence

from realchat.client.api import RealChatClient
from realchat.client.errors import (
    ClientClosed,
    RateLimited,
    RealChatError,
    SendError,
    SendTimeout,
    Unauthorized,
)
from realchat.client.events import Membership
from realchat.client.rest import Conversation
from realchat.contract.frames import Message

QUIT = "/quit"
LEAVE = "/leave"
#: Where the password is read from when `--password` is not given (before prompting).
PASSWORD_ENV = "REALCHAT_PASSWORD"
#: How long a typed line may take to be stored (reconnects included) before it is reported.
SEND_TIMEOUT_S = 60.0


def format_message(message: Message, me: str | None) -> str:
    """`[HH:MM] sender: content`; the user's own messages show as `me`."""
    sender = "me" if message.sender_id == me else message.sender_id[:8]
    return f"[{message.created_at:%H:%M}] {sender}: {message.content}"


def format_conversations(conversations: Sequence[Conversation]) -> list[str]:
    """One numbered line per conversation, numbers from 1."""
    return [
        f"{n}) {c.title or c.conversation_id[:8]}"
        f" ({len(c.member_ids)} members, {c.last_seq} messages)"
        for n, c in enumerate(conversations, start=1)
    ]


def parse_choice(text: str, count: int) -> int | None:
    """The 0-based index a typed number (1..count) picks, None if it is not one."""
    try:
        number = int(text.strip())
    except ValueError:
        return None
    return number - 1 if 1 <= number <= count else None


def parse_line(line: str) -> str | None:
    """What a typed line sends: None for a blank line, QUIT for `/quit`, LEAVE for `/leave`,
    else the text."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    return text.strip() if text.strip() in (QUIT, LEAVE) else text


async def _choose(conversations: Sequence[Conversation], ask: Callable[[str], str]) -> int:
    if len(conversations) == 1:
        return 0
    for line in format_conversations(conversations):
        print(line)
    while (
        index := parse_choice(await asyncio.to_thread(ask, "conversation: "), len(conversations))
    ) is None:
        print(f"a number from 1 to {len(conversations)}")
    return index


async def chat(
    base_url: str, username: str | None, password: str | None, conversation: str | None
) -> int:
    """Sign in, pick a conversation, then show it live and send each typed line. The password
    comes from `password`, else $REALCHAT_PASSWORD, else a prompt (keep it off the command
    line: other users can read a process's arguments)."""
    name = username if username else str(await asyncio.to_thread(input, "username: "))
    secret = password or os.environ.get(PASSWORD_ENV) or await _ask_password()
    try:
        probe = await RealChatClient.login(base_url, name, secret)
    except Unauthorized:
        print("sign-in refused: wrong username or password", file=sys.stderr)
        return 1
    try:
        everything = await probe.conversations()
        shown = [c for c in everything if conversation in (None, c.conversation_id)]
        if not shown:
            print("no conversation to show", file=sys.stderr)
            return 1
        chosen = shown[await _choose(shown, input)]
        page = await probe.history(chosen.conversation_id, max(0, chosen.last_seq - 20), 20)
    finally:
        await probe.close()
    # Start every conversation where it was listed: after the history, only new messages.
    positions = {c.conversation_id: c.last_seq for c in everything}
    client = await RealChatClient.login(base_url, name, secret, positions=positions)
    async with client:
        await client.wait_ready(30)
        for message in page.messages:
            print(format_message(message, client.user_id))
        title = chosen.title or chosen.conversation_id[:8]
        print(f"-- {title}: type a line to send it, {QUIT} to stop, {LEAVE} to leave", flush=True)
        return await converse(client, chosen.conversation_id, stdin_lines())


async def _ask_password() -> str:
    return str(await asyncio.to_thread(getpass.getpass, "password: "))


async def converse(client: RealChatClient, conversation_id: str, lines: asyncio.Queue[str]) -> int:
    """Show the conversation's messages as they come and send each line from `lines` (an empty
    string: end of input). 0 at `/quit` or end of input; 1 if the client stopped (the reason
    is printed: a display that died silently would look like a quiet conversation)."""
    shower = asyncio.create_task(_show(client, conversation_id), name="realchat-chat-display")
    typer = asyncio.create_task(_type(client, conversation_id, lines), name="realchat-chat-input")
    removal = asyncio.create_task(_removed(client, conversation_id), name="realchat-chat-member")
    try:
        await asyncio.wait({shower, typer, removal}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (shower, typer, removal):
            task.cancel()
    if typer.done() and not typer.cancelled():
        return typer.result()
    if removal.done() and not removal.cancelled() and removal.exception() is None:
        print(f"-- {removal.result()}", flush=True)
        return 0
    failure = None if shower.cancelled() else shower.exception()
    print(f"disconnected: {failure or 'the client stopped'}", file=sys.stderr)
    return 1


async def _show(client: RealChatClient, conversation_id: str) -> None:
    me = client.user_id
    async for message in client.messages():
        if message.conversation_id == conversation_id:
            print(format_message(message, me), flush=True)


async def _removed(client: RealChatClient, conversation_id: str) -> str:
    """Returns (what to say) once the user is out of the conversation (left on another device,
    or removed by its creator)."""
    async for event in client.events():
        if (
            isinstance(event, Membership)
            and event.conversation_id == conversation_id
            and event.change != "added"
            and client.user_id in event.user_ids
        ):
            return "you left this conversation" if event.change == "left" else "you were removed"
    raise ClientClosed("the client stopped")


async def _type(client: RealChatClient, conversation_id: str, lines: asyncio.Queue[str]) -> int:
    while (line := await lines.get()) != "":
        text = parse_line(line)
        if text == QUIT:
            break
        if text == LEAVE:
            await client.leave(conversation_id)
            print("-- you left this conversation", flush=True)
            break
        if text is None:
            continue
        try:
            await client.send(conversation_id, text, timeout_s=SEND_TIMEOUT_S)
        except Unauthorized as exc:
            print(f"signed out: {exc.message}", file=sys.stderr)
            return 1
        except ClientClosed:
            return 1
        except (RealChatError, ValueError) as exc:  # SendError, SendTimeout, bad content
            print(f"not sent: {_reason(exc)}", file=sys.stderr, flush=True)
    return 0


def _reason(error: Exception) -> str:
    """A one-line reason for a refused send."""
    if isinstance(error, RateLimited):
        return "too many messages; wait a moment and send it again"
    if isinstance(error, SendTimeout):
        return "no answer from the server in time (it may have been stored)"
    if isinstance(error, SendError):
        return f"{error.message} ({error.code})"
    return str(error)


def stdin_lines() -> asyncio.Queue[str]:
    """Standard input, line by line, read by a daemon thread (a blocked read must not keep
    the program from exiting when the connection dies); "" at its end."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def put(line: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: the program is ending
            loop.call_soon_threadsafe(queue.put_nowait, line)

    def pump() -> None:
        for line in iter(sys.stdin.readline, ""):
            put(line)
        put("")

    threading.Thread(target=pump, name="realchat-stdin", daemon=True).start()
    return queue
