"""The terminal client's pure helpers: message and list formatting, choice and line parsing."""

from __future__ import annotations

from datetime import UTC, datetime

from realchat.client.rest import Conversation
from realchat.client.terminal import (
    QUIT,
    format_conversations,
    format_message,
    parse_choice,
    parse_line,
)
from realchat.contract.frames import Message


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
    assert parse_line("  indented\r\n") == "  indented"
