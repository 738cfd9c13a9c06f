"""The web client's unread badges, "typing…" line, and edit and delete from a message's menu,
in Chromium: what one person does shows on the other's page (and on their other device's
page for the badges, which follow their read position), and the page ends with what the
server's history says."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from realchat.client import RealChatClient
from realchat.stack.supervisor import Stack
from tests.e2e.test_web_client import (
    DEADLINE_MS,
    PASSWORD,
    browser,
    one_gateway,
    open_person,
    two_in_a_conversation,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]
__all__ = ["browser", "one_gateway"]  # fixtures, used by name


async def test_badges_typing_edit_and_delete(one_gateway: Stack, browser: Browser) -> None:
    base_url = f"http://{one_gateway.app_settings.http.host}:{one_gateway.app_settings.http.port}"
    erin, frank = await two_in_a_conversation(browser, base_url, "erin", "frank")
    for text in ("one", "two", "three"):
        await erin.say(text)

    # Frank has not opened it: three unread. His second device, opened now, gets the count
    # from the server's list; once he reads on the first, the second's badge goes too.
    conversation = frank.page.get_by_role("button", name="erin, frank")
    await expect(conversation.locator(".unread")).to_have_text("3", timeout=DEADLINE_MS)
    phone = await open_person(browser, "frank-phone", 390, 780)
    await phone.enter(base_url, "frank", "Sign in")
    phone_badge = phone.page.get_by_role("button", name="erin, frank").locator(".unread")
    await expect(phone_badge).to_have_text("3", timeout=DEADLINE_MS)
    await conversation.click()
    await expect(frank.messages()).to_have_count(3, timeout=DEADLINE_MS)
    await expect(conversation.locator(".unread")).to_have_count(0)
    await expect(phone_badge).to_have_count(0, timeout=DEADLINE_MS)

    # Typing: frank types, erin sees the line; it goes once he sends.
    box = frank.page.get_by_label("Message", exact=True)
    await box.press_sequentially("four", delay=20)
    await expect(erin.page.locator("#typing")).to_have_text("frank is typing…", timeout=2_000)
    await box.press("Enter")
    await expect(erin.page.locator("#typing")).to_be_hidden(timeout=DEADLINE_MS)
    await expect(erin.messages()).to_have_count(4, timeout=DEADLINE_MS)

    # Erin edits "two" and deletes "three" from their menus; frank's page follows.
    await erin.page.get_by_role("button", name="Edit message 2").click()
    editor = erin.page.get_by_label("Edited message")
    await editor.fill("two, edited")
    await erin.page.get_by_role("button", name="Save").click()
    await erin.page.get_by_role("button", name="Delete message 3").click()
    want = ["one", "two, edited", "Message deleted", "four"]
    for person in (erin, frank):
        await expect(person.messages().locator(".content")).to_have_text(want, timeout=DEADLINE_MS)
        await expect(person.page.locator('#messages li[data-seq="2"] .edited')).to_have_text(
            "edited"
        )
        await expect(person.page.locator('#messages li[data-seq="3"]')).to_have_class(
            "message own deleted" if person is erin else "message deleted"
        )
    # Only the sender has the menu: frank has none on erin's messages.
    await expect(frank.page.get_by_role("button", name="Edit message 2")).to_have_count(0)

    reader = await RealChatClient.login(base_url, "erin", PASSWORD)
    try:
        conversation_id = (await reader.conversations())[0].conversation_id
        stored = (await reader.history(conversation_id)).messages
    finally:
        await reader.close()
    assert [(m.seq, m.content, m.version, m.deleted) for m in stored] == [
        (1, "one", 1, False),
        (2, "two, edited", 2, False),
        (3, "", 2, True),
        (4, "four", 1, False),
    ]
    for person in (erin, frank, phone):
        assert person.errors == [], person.errors
        await person.screenshot("changes")
