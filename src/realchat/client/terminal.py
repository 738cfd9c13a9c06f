"""`realchat chat`: a small terminal client for people, on top of the SDK.

Log in, pick a conversation, see its history and then live messages; each line typed is sent.
`/quit` (or end of input) leaves.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Callable, Sequence

from realchat.client.api import RealChatClient
from realchat.client.rest import Conversation
from realchat.contract.frames import Message

QUIT = "/quit"


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
    """What a typed line sends: None for a blank line, QUIT for `/quit`, else the text."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    return QUIT if text.strip() == QUIT else text


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
    name = username if username else str(await asyncio.to_thread(input, "username: "))
    secret = password if password else str(await asyncio.to_thread(getpass.getpass, "password: "))
    probe = await RealChatClient.login(base_url, name, secret)
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
        me = client.user_id
        for message in page.messages:
            print(format_message(message, me))

        async def show() -> None:
            async for message in client.messages():
                if message.conversation_id == chosen.conversation_id:
                    print(format_message(message, me), flush=True)

        shower = asyncio.create_task(show())
        try:
            while (line := await asyncio.to_thread(sys.stdin.readline)) != "":
                text = parse_line(line)
                if text == QUIT:
                    break
                if text is not None:
                    await client.send(chosen.conversation_id, text)
        finally:
            shower.cancel()
    return 0
