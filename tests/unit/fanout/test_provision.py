"""The benchmark's users: a sign-up whose reply was lost still yields that user, once."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from realchat.loadtest.fanout import realchat_side
from realchat.loadtest.fanout.realchat_side import provision
from realchat.loadtest.population import ProvisioningError


class FlakyAccounts:
    """Accounts whose first sign-up of each name is stored but answered with a 503 (a busy
    auth service behind a balancer), so the client's retry meets a 409."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {}
        self.sign_ups = 0
        self.members: list[str] = []

    async def sign_up(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        self.sign_ups += 1
        name = body["username"]
        if name in self.users:
            return web.json_response({"error": {"code": "username_taken"}}, status=409)
        self.users[name] = str(uuid.uuid4())
        return web.json_response({"error": {"code": "unavailable"}}, status=503)

    async def token(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        return web.json_response({"access_token": f"token-{body['username']}"})

    async def by_username(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if request.headers.get("Authorization") != f"Bearer token-{name}":
            return web.json_response({}, status=401)
        return web.json_response({"user_id": self.users[name], "username": name})

    async def conversation(self, request: web.Request) -> web.Response:
        self.members = (await request.json())["member_ids"]
        return web.json_response({"conversation_id": str(uuid.uuid4())}, status=201)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/users", self.sign_up)
        app.router.add_post("/v1/tokens", self.token)
        app.router.add_get("/v1/users/by-username/{name}", self.by_username)
        app.router.add_post("/v1/conversations", self.conversation)
        return app


async def test_a_sign_up_answered_with_an_error_but_stored_is_looked_up_not_failed() -> None:
    accounts = FlakyAccounts()
    async with TestServer(accounts.app()) as server, aiohttp.ClientSession() as http:
        audience = await provision(http, str(server.make_url("")).rstrip("/"), 2, 1)
    assert len(audience.subscriber_tokens) == 2
    assert len(audience.sender_tokens) == 1
    assert accounts.sign_ups == 6  # each name: the stored attempt, then the retry's 409
    # Everyone but the owner (the last sender) is in the conversation, each once, by real id.
    assert len(set(accounts.members)) == 2
    assert set(accounts.members) <= set(accounts.users.values())


async def test_a_refusal_other_than_taken_still_fails() -> None:
    app = web.Application()

    async def refuse(_: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "invalid_username"}}, status=400)

    app.router.add_post("/v1/users", refuse)
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        with pytest.raises(ProvisioningError) as refused:
            await provision(http, str(server.make_url("")).rstrip("/"), 1, 1)
    assert refused.value.status == 400


def test_subscribers_get_enough_accounts_for_the_connections_per_user_limit() -> None:
    assert realchat_side.subscriber_users(10, 1000, per_user_limit=32) == 32
    assert realchat_side.subscriber_users(10, 10_000, per_user_limit=32) == 313
    assert realchat_side.subscriber_users(10, 200, per_user_limit=32) == 10
    assert 1000 / realchat_side.subscriber_users(10, 1000, per_user_limit=7) <= 7
