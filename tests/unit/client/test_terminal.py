"""The terminal client: its pure helpers (message and list formatting, choice and line parsing),
and its chat loop against the scripted fake server (refused sends print why and the chat goes
on; a client that stops ends the chat with its reason instead of a silent display)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from realchat.client import RealChatClient
from realchat.client.rest import Conversation
from realchat.client.terminal import (
    LEAVE,
    QUIT,
    converse,
    format_conversations,
    format_message,
    parse_choice,
    parse_line,
)
from realchat.contract.frames import Message
from tests.unit.client.fake_server import DEADLINE_S, FakeConnection, FakeServer
from tests.unit.client.fake_server import message as frame_message
from tests.unit.client.test_client_scripted import OPTIONS, C, plain_sync


def message(sender: str, content: str = "hi") -> Message:
    at = datetime(2026, 1, 2, 9, 5, tzinfo=UTC)
    return Message("m1", "c1", 1, sender, content, at)


def test_a_message_shows_time_sender_and_content_and_own_ones_as_me() -> None:
    assert format_message(message("0123456789abcdef"), "me-id") == "[09:05] 01234567: hi"
    assert format_message(message("me-id", "yo"), "me-id") == "[09:05] me: yo"


def test_conversations_are_numbered_from_one_untitled_ones_by_id() -> None:
    listed = [
        Conversation("c" * 12, "lunch", ["a", "b"], 3),
        Conversation("abcdef0123", None, ["a"], 0),
    ]
    assert format_conversations(listed) == [
        "1) lunch (2 members, 3 messages)",
        "2) abcdef01 (1 members, 0 messages)",
    ]


def test_a_choice_is_a_number_in_range() -> None:
    assert parse_choice(" 2\n", 3) == 1
    assert [parse_choice(t, 3) for t in ("0", "4", "x", "", "-1")] == [None] * 5


def test_lines_blank_quit_or_text() -> None:
    assert parse_line("hello there\n") == "hello there"
    assert parse_line("  \n") is None
    assert parse_line("/quit\n") == QUIT
    assert parse_line(" /leave \n") == LEAVE
    assert parse_line("  indented\r\n") == "  indented"


def typed(*lines: str) -> asyncio.Queue[str]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for line in lines:
        queue.put_nowait(line)
    return queue


@pytest.mark.asyncio(loop_scope="session")
async def test_refused_sends_print_why_and_the_chat_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def script(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 0})
        for code in ("rate_limited", "not_a_member"):
            send = await conn.expect("send")
            await conn.send(
                {"type": "error", "code": code, "message": "no",
                 "client_msg_id": send["client_msg_id"]}
            )  # fmt: skip
        send = await conn.expect("send")
        await conn.send(
            {"type": "send_ok", "client_msg_id": send["client_msg_id"],
             "message": frame_message(C, 1, send["content"])}
        )  # fmt: skip

    options = replace(OPTIONS, rate_limited_retry_s=0)
    async with FakeServer([script]) as server:
        async with RealChatClient(server.base_url, "t", options=options) as client:
            lines = typed("too fast\n", "not mine\n", "x" * 4001 + "\n", "fine\n")
            task = asyncio.create_task(converse(client, C, lines))
            await server.script_done(0)
            lines.put_nowait(QUIT + "\n")
            assert await asyncio.wait_for(task, DEADLINE_S) == 0
        assert server.errors == []
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "not sent: too many messages; wait a moment and send it again",
        "not sent: no (not_a_member)",
        "not sent: content must be 1-4000 characters",
    ]
    assert "Traceback" not in out + err
    assert out.splitlines() == ["[00:00] someone: fine"]  # the stored one, shown once


@pytest.mark.asyncio(loop_scope="session")
async def test_being_removed_from_the_conversation_ends_the_chat_saying_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def script(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 0})
        for user_ids in (["someone-else"], ["user-1"]):  # another member first: carry on
            await conn.send(
                {"type": "member", "conversation_id": C, "change": "removed",
                 "user_ids": user_ids, "by": "the-creator"}
            )  # fmt: skip

    async with (
        FakeServer([script]) as server,
        RealChatClient(server.base_url, "t", options=OPTIONS) as client,
    ):
        result = await asyncio.wait_for(converse(client, C, typed()), DEADLINE_S)
    assert result == 0
    out, _ = capsys.readouterr()
    assert out.splitlines() == ["-- you were removed"]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_client_that_stops_ends_the_chat_with_its_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def refuse(conn: FakeConnection) -> None:
        await conn.close(4001, "token revoked")

    async with (
        FakeServer([refuse]) as server,
        RealChatClient(server.base_url, "t", options=OPTIONS) as client,
    ):
        outcome = await asyncio.wait_for(converse(client, C, typed()), DEADLINE_S)
    assert outcome == 1
    err = capsys.readouterr().err
    assert err.startswith("disconnected: "), err
    assert "4001" in err, err
