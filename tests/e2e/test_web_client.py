"""The web client at `/`, driven in a real browser (Debian's Chromium, headless, via Playwright):
two people in two browser contexts (one desktop-sized, one phone-sized) sign up, start a
conversation and chat; the gateway is SIGKILLed mid-chat, both keep typing while it is down, and
it is restarted. Both pages end with every message of the conversation once, in seq order (the
server's history is the reference), each person's messages in the order they typed them, nothing
left unsent, their own messages marked read by the other, and the other's presence dot online
(offline once the other closes the browser).

Runs a throw-away stack of its own on free ports (the gateway is killed). Screenshots go to
`var/test-output/web-client/`; with REALCHAT_README_SCREENSHOT=1 the desktop page is also saved
as `docs/images/web-client.png` (the README's).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from realchat.client import RealChatClient
from realchat.stack.shape import EVERYTHING
from realchat.stack.supervisor import Stack
from tests.support.stacks import ROOT, throwaway_settings

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
#: Without the background-networking flags Chromium keeps calling home (there is no network).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = ROOT / "var" / "test-output" / "web-client"
README_SCREENSHOT = ROOT / "docs" / "images" / "web-client.png"
#: Generous bound (ms) for anything the pages must eventually show.
DEADLINE_MS = 45_000
PASSWORD = "correct horse battery"
XSS = '<img src=x onerror="document.title=1">'


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def one_gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A whole stack of its own (one gateway, directly on the public entrypoint)."""
    settings = throwaway_settings(tmp_path_factory.mktemp("web-client") / "stack", gateways=1)
    stack = Stack(settings, include=EVERYTHING, report=print)
    try:
        await stack.up()
        yield stack
    finally:
        await stack.down()


def system_chromium() -> str:
    """Debian's Chromium: Playwright never downloads a browser here (there is no network)."""
    assert CHROMIUM.exists(), f"no {CHROMIUM}: run scripts/bootstrap.sh"
    return str(CHROMIUM)


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=system_chromium(), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


class Person:
    """One browser context with the client open; JavaScript errors are recorded."""

    def __init__(self, name: str, page: Page) -> None:
        self.name = name
        self.page = page
        self.typed: list[str] = []
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    async def sign_up(self, base_url: str) -> None:
        await self.enter(base_url, self.name, "Create account")

    async def enter(self, base_url: str, username: str, button: str) -> None:
        """Open the page and sign up or in (`button`) as `username`."""
        await self.page.goto(f"{base_url}/")
        await self.page.get_by_label("Username").fill(username)
        await self.page.get_by_label("Password").fill(PASSWORD)
        await self.page.get_by_role("button", name=button).click()
        await self.expect_connection("online")

    async def expect_connection(self, state: str) -> None:
        await expect(self.page.locator("#connection")).to_have_attribute(
            "data-state", state, timeout=DEADLINE_MS
        )

    async def say(self, text: str) -> None:
        """Type a message and press Enter (the keyboard way to send)."""
        box = self.page.get_by_label("Message", exact=True)
        await box.fill(text)
        await box.press("Enter")
        await expect(box).to_have_value("")
        self.typed.append(text)

    def messages(self) -> Locator:
        return self.page.locator("#messages li.message")

    async def expect_all_sent(self) -> None:
        """Nothing typed is left waiting to be stored."""
        await expect(self.page.locator("#outgoing li")).to_have_count(0, timeout=DEADLINE_MS)

    async def expect_conversation(self, title: str, texts: list[str]) -> None:
        """Open the conversation named `title`: it shows exactly `texts`, in order."""
        await self.page.get_by_role("button", name=title).click()
        await expect(self.messages().locator(".content")).to_have_text(texts, timeout=DEADLINE_MS)

    async def shown(self) -> list[tuple[int, str]]:
        """(seq, text) of every message on the page, in page order."""
        items = self.page.locator("#messages li.message")
        seqs = [int(s or 0) for s in await items.evaluate_all("e => e.map(i => i.dataset.seq)")]
        texts = await items.locator(".content").all_text_contents()
        return list(zip(seqs, texts, strict=True))

    async def expect_other_is(self, status: str) -> None:
        """The presence dot of the open conversation (the other person's status)."""
        await expect(self.page.locator("#conversation-presence")).to_have_attribute(
            "data-presence", status, timeout=DEADLINE_MS
        )

    async def screenshot(self, name: str) -> None:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=OUTPUT / f"{self.name}-{name}.png")


async def two_in_a_conversation(
    browser: Browser, base_url: str, first: str, second: str
) -> tuple[Person, Person]:
    """Two people signed up on desktop-sized pages; `first` starts a conversation with
    `second` (it shows for `second` with its first message)."""
    a = await open_person(browser, first, 1000, 640)
    b = await open_person(browser, second, 1000, 640)
    await asyncio.gather(a.sign_up(base_url), b.sign_up(base_url))
    await a.page.get_by_label("New conversation with").fill(second)
    await a.page.get_by_role("button", name="Start conversation").click()
    return a, b


async def chat(*lines: tuple[Person, str]) -> None:
    """Each person types their line, in this order (without waiting for the others to see it)."""
    for person, text in lines:
        await person.say(text)


async def open_person(browser: Browser, name: str, width: int, height: int) -> Person:
    context = await browser.new_context(viewport={"width": width, "height": height})
    return Person(name, await context.new_page())


async def test_two_people_chat_through_a_gateway_sigkill(
    one_gateway: Stack, browser: Browser
) -> None:
    base_url = f"http://{one_gateway.app_settings.http.host}:{one_gateway.app_settings.http.port}"
    alice = await open_person(browser, "alice", 1000, 640)
    bob = await open_person(browser, "bob", 390, 780)  # phone width: list and chat one at a time
    await asyncio.gather(alice.sign_up(base_url), bob.sign_up(base_url))

    # Alice starts the conversation by username; Bob sees it appear with her first message.
    await alice.page.get_by_label("New conversation with").fill("bob")
    await alice.page.get_by_role("button", name="Start conversation").click()
    await alice.say("Hi Bob! Lunch today?")
    await bob.page.get_by_role("button", name="alice, bob").click()
    await expect(bob.messages()).to_have_count(1, timeout=DEADLINE_MS)
    for person in (alice, bob):
        await person.expect_other_is("online")
    await chat(
        (bob, "Sure, noon at the usual place?"),
        (bob, XSS),  # shown as text, never as markup
        (alice, "Noon works."),
        (alice, "I'll book a table."),
    )
    await expect(alice.messages()).to_have_count(5, timeout=DEADLINE_MS)
    await expect(bob.messages()).to_have_count(5, timeout=DEADLINE_MS)
    for person in (alice, bob):
        await person.screenshot("1-chatting")

    # The gateway dies mid-chat: both pages notice and keep what is typed until it is back.
    await one_gateway.kill_component("gateway")
    for person in (alice, bob):
        await person.expect_connection("reconnecting")
    await chat(
        (alice, "Did you get that?"),
        (bob, "Typing while the server is down..."),
        (alice, "Still here."),
    )
    await expect(alice.page.locator("#outgoing li")).to_have_count(2)
    for person in (alice, bob):
        await person.screenshot("2-offline")
    await one_gateway.start_component("gateway")
    for person in (alice, bob):
        await person.expect_connection("online")
    await chat((bob, "Back online."), (alice, "See you at noon!"), (bob, "See you!"))

    typed = alice.typed + bob.typed
    for person in (alice, bob):
        await expect(person.messages()).to_have_count(len(typed), timeout=DEADLINE_MS)
        await person.expect_all_sent()

    # The server's history is the reference: each message stored once, seqs 1..n.
    conversation_id = await alice.page.locator("#conversations button").first.get_attribute(
        "data-conversation"
    )
    assert conversation_id
    reader = await RealChatClient.login(base_url, "alice", PASSWORD)
    try:
        history = await reader.history(conversation_id, 0, 500)
    finally:
        await reader.close()
    stored = [(m.seq, m.content) for m in history.messages]
    assert [seq for seq, _ in stored] == list(range(1, len(typed) + 1))
    assert sorted(text for _, text in stored) == sorted(typed)

    for person in (alice, bob):
        # Every message once, in seq order, exactly as stored.
        await expect(person.messages().locator(".content")).to_have_text(
            [text for _, text in stored], timeout=DEADLINE_MS
        )
        assert await person.shown() == stored, person.name
        # Each person's messages in the order they were typed, and all marked as theirs.
        own = person.page.locator("#messages li.own .content")
        await expect(own).to_have_text(person.typed)
        # Read receipts: the other has the conversation open, so every own message gets read.
        statuses = person.page.locator("#messages li.own .status")
        await expect(statuses).to_have_text(["✓✓ Read"] * len(person.typed), timeout=DEADLINE_MS)
        await expect(person.page.locator("#messages img")).to_have_count(0)
        await expect(person.page).to_have_title("RealChat")
        await person.expect_connection("online")
        await person.expect_other_is("online")
        assert person.errors == [], person.errors
        await person.screenshot("3-after-restart")

    if os.environ.get("REALCHAT_README_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await alice.page.screenshot(path=README_SCREENSHOT)

    # Bob closes his browser: Alice sees him go offline.
    await bob.page.context.close()
    await alice.expect_other_is("offline")


async def test_pages_catch_up_by_sync_while_live_delivery_is_paused(
    one_gateway: Stack, browser: Browser
) -> None:
    """Kafka down: the gateway tells the pages that live delivery paused; they say so and sync
    every few seconds, so a message sent meanwhile (stored: the outbox holds its event) still
    shows on the other page; when the bus is back, live delivery resumes."""
    base_url = f"http://{one_gateway.app_settings.http.host}:{one_gateway.app_settings.http.port}"
    carol, dave = await two_in_a_conversation(browser, base_url, "carol", "dave")
    await carol.say("Before the bus goes away")
    await dave.page.get_by_role("button", name="carol, dave").click()
    await expect(dave.messages()).to_have_count(1, timeout=DEADLINE_MS)

    await one_gateway.kill_component("kafka")
    try:
        for person in (carol, dave):
            await expect(person.page.locator("#connection-text")).to_contain_text(
                "live updates paused", timeout=90_000
            )
        await carol.say("Sent while the bus is down")
        await expect(dave.messages()).to_have_count(2, timeout=DEADLINE_MS)
        await expect(dave.messages().last.locator(".content")).to_have_text(
            "Sent while the bus is down"
        )
    finally:
        await one_gateway.start_component("kafka")
    for person in (carol, dave):
        await expect(person.page.locator("#connection-text")).to_have_text(
            "Connected", timeout=120_000
        )
    await dave.say("Live again")
    await expect(carol.messages()).to_have_count(3, timeout=DEADLINE_MS)
    for person in (carol, dave):
        assert person.errors == [], person.errors


async def test_a_page_whose_sync_finds_the_chat_service_down_syncs_again_once_it_is_back(
    one_gateway: Stack, browser: Browser
) -> None:
    """The page reconnects while the chat service is down: its sync is refused
    (`chat_unavailable`: the conversations cannot be listed) and no `sync_done` will ever come.
    It must try again rather than wait: once the service is back the page is online and what
    was typed meanwhile is sent. (A chaos run's SDK clients waited 127 s this way.)"""
    base_url = f"http://{one_gateway.app_settings.http.host}:{one_gateway.app_settings.http.port}"
    erin, frank = await two_in_a_conversation(browser, base_url, "erin", "frank")
    await erin.say("Before the outage")
    await expect(erin.messages()).to_have_count(1, timeout=DEADLINE_MS)  # stored

    await one_gateway.kill_component("chat")
    await one_gateway.kill_component("gateway")
    await erin.expect_connection("reconnecting")
    await one_gateway.start_component("gateway")  # up, with the chat service still away
    try:
        await erin.say("Typed while the chat service is down")
        # Connected and refused, more than once (each refusal ends that connection).
        await expect(erin.page.locator("#connection")).to_have_attribute(
            "data-state", "reconnecting", timeout=DEADLINE_MS
        )
    finally:
        await one_gateway.start_component("chat")
    await erin.expect_connection("online")
    await erin.expect_all_sent()
    await frank.expect_conversation(
        "erin, frank", ["Before the outage", "Typed while the chat service is down"]
    )
    for person in (erin, frank):
        assert person.errors == [], person.errors


async def test_a_send_refused_while_the_chat_service_is_away_is_sent_again(
    one_gateway: Stack, browser: Browser
) -> None:
    """A send that reaches the gateway while the chat service is down is refused
    (`chat_unavailable`, "not now"): the page writes it again, with the same client_msg_id,
    until it is stored, instead of leaving it "Not sent"."""
    base_url = f"http://{one_gateway.app_settings.http.host}:{one_gateway.app_settings.http.port}"
    gina, hugo = await two_in_a_conversation(browser, base_url, "gina", "hugo")
    await gina.say("First")
    await expect(gina.messages()).to_have_count(1, timeout=DEADLINE_MS)
    await one_gateway.kill_component("chat")
    try:
        await gina.say("Refused at first")  # the page is still connected: the gateway refuses
        await expect(gina.page.locator("#outgoing li")).to_have_count(1)
        await expect(gina.page.locator("#outgoing .status")).to_have_text("Sending…")
    finally:
        await one_gateway.start_component("chat")
    await gina.expect_all_sent()
    await hugo.expect_conversation("gina, hugo", ["First", "Refused at first"])
    for person in (gina, hugo):
        assert person.errors == [], person.errors
