"""The load generator's population beside the stack: provisioned in bulk once, reused by the next
run of the same shape with fresh tokens, provisioned anew when the stack no longer holds it."""

from __future__ import annotations

import dataclasses
import json
import random
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from realchat.loadtest.population import Population, Shape, population_for
from realchat.loadtest.stackview import stack_view
from tests.e2e.conftest import RealChat

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def conversations_seen_by(
    http: aiohttp.ClientSession, base_url: str, user: dict[str, Any]
) -> set[str]:
    headers = {"Authorization": f"Bearer {user['token']}"}
    async with http.get(f"{base_url}/v1/conversations", headers=headers) as reply:
        assert reply.status == 200, await reply.text()
        body = await reply.json()
    return {c["conversation_id"] for c in body["conversations"]}


async def assert_usable(
    http: aiohttp.ClientSession, base_url: str, found: Population, exact: bool = True
) -> None:
    """Every user's token is accepted and shows the conversations planned for them (exactly
    those, unless an earlier population of the same users still exists)."""
    for user in found.users:
        seen = await conversations_seen_by(http, base_url, user)
        planned = set(user["conversations"])
        assert seen == planned if exact else planned <= seen


async def test_population_is_provisioned_once_and_reused(
    realchat: RealChat, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    view = await stack_view(realchat.services)
    assert view.operator is not None
    operator = dataclasses.replace(view.operator, cache_dir=tmp_path)
    shape = Shape(
        users=6,
        conversations_per_user=2,
        group_share=0.5,
        group_size=3,
        seed=random.randrange(1 << 30),
    )

    first = await population_for(http, realchat.base_url, shape, operator, print)
    assert first.how == "provisioned"
    assert len(first.users) == 6
    assert all(user["conversations"] for user in first.users)
    await assert_usable(http, realchat.base_url, first)

    second = await population_for(http, realchat.base_url, shape, operator, print)
    assert second.how == "reused"
    assert [u["user_id"] for u in second.users] == [u["user_id"] for u in first.users]
    assert [u["conversations"] for u in second.users] == [u["conversations"] for u in first.users]
    assert {u["token"] for u in second.users}.isdisjoint(u["token"] for u in first.users)
    await assert_usable(http, realchat.base_url, second)

    cache = tmp_path / f"population-{shape.key}.json"
    saved = json.loads(cache.read_text())
    saved["conversation_ids"][0] = str(uuid.uuid4())  # as if the stack had been reset
    cache.write_text(json.dumps(saved))
    third = await population_for(http, realchat.base_url, shape, operator, print)
    assert third.how == "provisioned"
    assert [u["user_id"] for u in third.users] == [u["user_id"] for u in first.users]
    # The first population's conversations still exist here (no real reset): the users see both.
    await assert_usable(http, realchat.base_url, third, exact=False)
