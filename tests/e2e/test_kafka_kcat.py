"""Debian's kcat reads, from the real broker, a record that RealChat itself produced: a message
sent through the gateway, committed by the chat service, published by the outbox publisher."""

from __future__ import annotations

import asyncio
import subprocess

import aiohttp

from realchat.events.topics import MESSAGE_CREATED
from tests.e2e.conftest import RealChat
from tests.support.client import create_conversation, register, send_rest
from tests.support.waiting import eventually_async


def kcat_read_all(bootstrap: str, topic: str) -> str:
    """Every record of `topic` from the beginning, as `key payload` lines; exits at the end."""
    return subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
         "-f", "%k %s\n"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip


async def test_kcat_reads_the_message_created_event_of_a_sent_message(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    alice = await register(http, realchat.base_url, "alice")
    bob = await register(http, realchat.base_url, "bob")
    conversation = await create_conversation(http, realchat.base_url, alice, bob)
    sent = await send_rest(http, realchat.base_url, alice, conversation, "read me with kcat")
    message_id = str(sent["message_id"])
    bootstrap = realchat.services.kafka.bootstrap_servers

    async def read() -> list[str]:
        output = await asyncio.to_thread(kcat_read_all, bootstrap, MESSAGE_CREATED)
        return [line for line in output.splitlines() if message_id in line]

    # The outbox publisher publishes after the commit: poll until it did (generous deadline).
    lines = await eventually_async(read, until=bool, timeout_s=60)
    assert len(lines) >= 1, f"message {message_id} not in {MESSAGE_CREATED}"
    key, payload = lines[0].split(" ", 1)
    assert key == conversation  # keyed by conversation: one conversation, one partition
    assert "read me with kcat" in payload
