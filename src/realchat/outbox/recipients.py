"""A message event's recipients, added when the event is published rather than when it is written.

Why: gateways route each `chat.message.created.v1` event by its `recipients` (the conversation's
members). Written into every outbox row, that list cost PostgreSQL more than the rest of the
message: with 64 members, ~2.9 KB of JSON per row, built, compressed and WAL-logged once per
message (a batch of 32 sends across conversations: 229 us per message with it, 77 without). The
publisher adds it instead: the statement that reads a batch of pending events
(`store.pending_batch`) also reads each of their conversations' members, once per
conversation.

Guarantee: `recipients` are the conversation's members when the event is published. A member
who joined in between also gets the live event, as they get the message from history anyway; a
member who left or was removed in between does not (they may no longer read the conversation),
and nothing written after a member left ever reaches them. Events that already carry recipients
(written by an earlier version, or any other event type) go out unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from realchat.events.topics import MESSAGE_CREATED

if TYPE_CHECKING:
    from realchat.outbox.rows import OutboxEvent

#: The key as it appears in a payload that has it. Inside a JSON string a quote is escaped
#: (`\"`), so message content can never contain this sequence.
_KEY = b'"recipients":'


def needs_recipients(event: OutboxEvent) -> bool:
    return event.event_type == MESSAGE_CREATED and _KEY not in event.payload


def with_recipients(payload: bytes, members_json: bytes) -> bytes:
    """`payload` (a JSON object) with `"recipients": <members_json>` as its last member."""
    body = payload.rstrip()
    if not body.endswith(b"}"):
        raise ValueError("an event payload must be a JSON object")
    separator = b", " if body[:-1].rstrip() != b"{" else b""
    return body[:-1] + separator + _KEY + b" " + members_json + b"}"


def add_recipients(
    events: Sequence[OutboxEvent], members: Mapping[str, bytes]
) -> list[OutboxEvent]:
    """The events as published: each one that needs them gets its conversation's members
    (`members` by conversation id; a conversation missing there has none)."""
    return [
        dataclasses.replace(
            e, payload=with_recipients(e.payload, members.get(e.partition_key, b"[]"))
        )
        if needs_recipients(e)
        else e
        for e in events
    ]
