"""REST calls that return what came back (status, JSON body) and checks of the contract's error
body, for tests that look at refusals rather than successes."""

from __future__ import annotations

from typing import Any

import aiohttp


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    """The status and the JSON body (the text, if the body is not JSON: checks then fail)."""
    async with http.request(method, url, **kwargs) as response:
        if response.content_type != "application/json":
            return response.status, await response.text()
        return response.status, await response.json()


def assert_error(reply: tuple[int, Any], status: int, code: str) -> None:
    """`reply` is the contract's error: that status and `{"error": {"code", "message"}}`."""
    got_status, body = reply
    assert (got_status, _code(body)) == (status, code), f"got {got_status}: {body!r}"
    message = body["error"]["message"]
    assert isinstance(message, str)
    assert message


def _code(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, str) else None
    return None
