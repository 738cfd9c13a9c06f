"""`realchat chat`, the terminal client, as a person uses it: a subprocess whose stdin is the
keyboard (the password from $REALCHAT_PASSWORD, not the command line). A typed line reaches a
peer using the SDK, the peer's reply is printed, a line the server cannot take prints why and
the chat goes on, `/quit` leaves with 0."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import pytest

from realchat.client import ClientOptions, RealChatClient
from realchat.client.terminal import PASSWORD_ENV, QUIT
from tests.e2e.conftest import RealChat
from tests.support.client import PASSWORD

pytestmark = pytest.mark.asyncio(loop_scope="session")

DEADLINE_S = 60.0


class Terminal:
    """The running `realchat chat`: lines in, lines out."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.shown: list[str] = []

    async def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def until_shown(self, predicate: str) -> str:
        """The first line printed (from now on or before) that contains `predicate`."""
        assert self.process.stdout is not None
        async with asyncio.timeout(DEADLINE_S):
            while not any(predicate in line for line in self.shown):
                raw = await self.process.stdout.readline()
                assert raw, f"the chat ended; it showed {self.shown}"
                self.shown.append(raw.decode().rstrip("\n"))
        return next(line for line in self.shown if predicate in line)


async def test_a_typed_line_reaches_a_peer_and_the_reply_is_shown(realchat: RealChat) -> None:
    base = realchat.base_url
    alice, bob = (f"{name}_{uuid.uuid4().hex[:10]}" for name in ("alice", "bob"))
    for name in (alice, bob):
        await RealChatClient.register(base, name, PASSWORD)
    peer = await RealChatClient.login(base, bob, PASSWORD, options=ClientOptions())
    async with peer:
        them, me = await peer.user_by_username(alice), await peer.user_by_username(bob)
        conversation = await peer.create_conversation([them.user_id], "terminal")
        incoming = peer.messages()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "realchat", "chat", "--url", base, "--username", alice,
            "--conversation", conversation.conversation_id,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, PASSWORD_ENV: PASSWORD},
        )  # fmt: skip
        try:
            terminal = Terminal(process)
            await terminal.until_shown(f"{QUIT} to stop")  # signed in, live
            await terminal.type("x" * 4001)  # too long: refused before sending
            await terminal.type("hello from a terminal")
            async with asyncio.timeout(DEADLINE_S):
                received = await anext(incoming)
            assert (received.content, received.sender_id) == ("hello from a terminal", them.user_id)
            await peer.send(conversation.conversation_id, "hello back")
            shown = await terminal.until_shown("hello back")
            assert shown.endswith(f"] {me.user_id[:8]}: hello back"), shown
            await terminal.type(QUIT)
            async with asyncio.timeout(DEADLINE_S):
                _, err = await process.communicate()
            assert process.returncode == 0, err.decode()
            assert "not sent: content must be 1-4000 characters" in err.decode().splitlines()
            assert "Traceback" not in err.decode()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
