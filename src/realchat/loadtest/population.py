"""The load test's users and conversations: provisioned once per stack, reused by later runs.

Through the public API every user costs two argon2id hashes (sign-up and login): 2,500 users took
13 minutes here. When the load generator runs beside the stack (`--direct`), it is the operator:
accounts are created in bulk with one hash (`auth.provisioning`), tokens are minted with the
stack's signing key, and the population (accounts and conversations, named after the shape that
made them) is remembered in the stack's state dir. A later run of the same shape checks that
every account and conversation still exists and only mints new tokens. Against a remote
entrypoint, users sign up and log in over REST as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from realchat.auth.passwords import Passwords
from realchat.auth.provisioning import create_users, mint_tokens, numbered_usernames
from realchat.auth.store import AuthStore
from realchat.auth.tokens import TokenIssuer
from realchat.loadtest.bench_report import write_atomically
from realchat.loadtest.messages import TokenMinting
from realchat.loadtest.renewal import issuer_for

Reporter = Callable[[str], None]
PASSWORD = "load test password"


class ProvisioningError(RuntimeError):
    """The population could not be set up; the message says why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status of the refusal, if the server refused.
        self.status = status


@dataclass(frozen=True)
class Shape:
    """What a population is made of; equal shapes are the same population."""

    users: int
    conversations_per_user: int
    group_share: float
    group_size: int
    seed: int

    @property
    def key(self) -> str:
        text = json.dumps(
            [self.users, self.conversations_per_user, self.group_share, self.group_size, self.seed]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass
class Population:
    users: list[dict[str, Any]]
    conversations: list[list[int]]
    register_s: float
    conversations_s: float
    #: "reused", "provisioned" (bulk, by the operator path) or "registered" (over REST).
    how: str = "registered"
    #: How the load generator renews the users' tokens (None: by logging in).
    minting: TokenMinting | None = None


@dataclass(frozen=True)
class Operator:
    """What the operator path needs: the stack's database and signing key, and where the
    population of each shape is remembered."""

    dsn: str
    minting: TokenMinting
    cache_dir: Path

    @cached_property
    def issuer(self) -> TokenIssuer:
        return issuer_for(self.minting)


def users_for(connections: int, devices_per_user: int) -> int:
    return max(2, math.ceil(connections / devices_per_user))


def plan_conversations(
    users: int, per_user: int, group_share: float, group_size: int, rng: random.Random
) -> list[list[int]]:
    """Member lists (user indices): about `per_user` conversations each, everyone in at least
    one."""
    group_size = max(3, min(group_size, users))
    average = 2 * (1 - group_share) + group_size * group_share
    count = max(1, round(users * per_user / average))
    found: list[list[int]] = []
    for _ in range(count):
        size = group_size if rng.random() < group_share and users >= 3 else 2
        found.append(rng.sample(range(users), min(size, users)))
    covered = {u for members in found for u in members}
    for user in range(users):
        if user not in covered and users > 1:
            partner = rng.choice([u for u in (user - 1, user + 1) if 0 <= u < users])
            found.append([user, partner])
    return found


async def post_json(
    http: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST with a few retries on 429, 5xx and connection errors; any other refusal raises."""
    text = ""
    for attempt in range(5):
        try:
            async with http.post(url, json=body, headers=headers) as reply:
                if reply.status in (200, 201):
                    return dict(await reply.json())
                text = await reply.text()
                if reply.status < 500 and reply.status != 429:
                    raise ProvisioningError(f"POST {url}: {reply.status} {text}", reply.status)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            text = str(exc)
        await asyncio.sleep(0.5 * (attempt + 1))
    raise ProvisioningError(f"POST {url} failed 5 times: {text}")


async def population_for(
    http: aiohttp.ClientSession,
    base_url: str,
    shape: Shape,
    operator: Operator | None,
    report: Reporter,
    register_concurrency: int = 8,
) -> Population:
    """The population of `shape`: reused, provisioned by the operator path, or registered."""
    if operator is None:
        return await _register(http, base_url, shape, report, register_concurrency)
    cache = operator.cache_dir / f"population-{shape.key}.json"
    reused = await _reuse(cache, shape, operator, report)
    if reused is not None:
        return reused
    return await _provision(http, base_url, shape, operator, cache, report)


async def _reuse(
    cache: Path, shape: Shape, operator: Operator, report: Reporter
) -> Population | None:
    saved = await asyncio.to_thread(_load, cache)
    if saved is None:
        return None
    users = saved["users"]
    conversation_ids = saved["conversation_ids"]
    db = await asyncpg.connect(operator.dsn, timeout=10)
    try:
        found_users = await db.fetchval(
            "SELECT count(*) FROM users WHERE id = ANY($1::uuid[])",
            [u["user_id"] for u in users],
        )
        found_conversations = await db.fetchval(
            "SELECT count(*) FROM conversations WHERE id = ANY($1::uuid[])", conversation_ids
        )
    finally:
        await db.close()
    if found_users != len(users) or found_conversations != len(conversation_ids):
        report(f"population {shape.key}: the stack no longer holds it, provisioning anew")
        return None
    started = time.monotonic()
    _give_tokens(users, operator.issuer)
    report(f"population {shape.key}: reused ({len(users)} users, fresh tokens)")
    return Population(
        users,
        saved["conversations"],
        round(time.monotonic() - started, 1),
        0.0,
        "reused",
        operator.minting,
    )


async def _provision(
    http: aiohttp.ClientSession,
    base_url: str,
    shape: Shape,
    operator: Operator,
    cache: Path,
    report: Reporter,
) -> Population:
    started = time.monotonic()
    names = numbered_usernames(f"lt{shape.key}", shape.users)
    report(f"population {shape.key}: creating {len(names)} accounts in bulk ...")
    users = await bulk_accounts(operator, names, PASSWORD)
    register_s = round(time.monotonic() - started, 1)
    plans, ids, conversations_s = await _create_conversations(http, base_url, shape, users, report)
    kept = [{k: u[k] for k in ("username", "password", "user_id", "conversations")} for u in users]
    saved = {"users": kept, "conversations": plans, "conversation_ids": ids}
    await asyncio.to_thread(write_atomically, cache, json.dumps(saved))
    return Population(users, plans, register_s, conversations_s, "provisioned", operator.minting)


async def _register(
    http: aiohttp.ClientSession,
    base_url: str,
    shape: Shape,
    report: Reporter,
    concurrency: int,
) -> Population:
    """Through the public API only: sign up and log in each user."""
    base = base_url.rstrip("/")
    run = uuid.uuid4().hex[:8]
    gate = asyncio.Semaphore(concurrency)
    users: list[dict[str, Any]] = [{} for _ in range(shape.users)]
    done = 0
    started = time.monotonic()

    async def register(n: int) -> None:
        nonlocal done
        credentials = {"username": f"lt{run}_{n}", "password": PASSWORD}
        async with gate:
            created = await post_json(http, f"{base}/v1/users", credentials)
            token = await post_json(http, f"{base}/v1/tokens", credentials)
        users[n] = {**credentials, "user_id": created["user_id"], "token": token["access_token"]}
        done += 1
        if done % 250 == 0:
            report(f"  users: {done}/{shape.users} ({time.monotonic() - started:.0f} s)")

    report(
        f"registering {shape.users} users over REST ({concurrency} at a time: argon2id is "
        "CPU-bound) ..."
    )
    await asyncio.gather(*(register(n) for n in range(shape.users)))
    register_s = round(time.monotonic() - started, 1)
    plans, _, conversations_s = await _create_conversations(http, base_url, shape, users, report)
    return Population(users, plans, register_s, conversations_s, "registered")


def _load(cache: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(cache.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


async def bulk_accounts(
    operator: Operator, names: list[str], password: str
) -> list[dict[str, Any]]:
    """The accounts created as an operator would (one hash for the batch), each with its
    username, password, user_id and a minted token."""
    pool = await asyncpg.create_pool(operator.dsn, min_size=1, max_size=2)
    try:
        created = await create_users(AuthStore(pool), Passwords(), names, password)
    finally:
        await pool.close()
    users: list[dict[str, Any]] = [
        {"username": u.username, "password": password, "user_id": str(u.user_id)} for u in created
    ]
    _give_tokens(users, operator.issuer)
    return users


def _give_tokens(users: list[dict[str, Any]], issuer: TokenIssuer) -> None:
    minted = mint_tokens(issuer, (uuid.UUID(u["user_id"]) for u in users))
    for user, token in zip(users, minted, strict=True):
        user["token"] = token.access_token


async def _create_conversations(
    http: aiohttp.ClientSession,
    base_url: str,
    shape: Shape,
    users: list[dict[str, Any]],
    report: Reporter,
) -> tuple[list[list[int]], list[str], float]:
    """The shape's conversations over REST (membership rules stay the API's); each user's
    `conversations` list filled in. Returns the plans, the conversation ids and the time."""
    rng = random.Random(shape.seed)
    plans = plan_conversations(
        shape.users, shape.conversations_per_user, shape.group_share, shape.group_size, rng
    )
    report(f"creating {len(plans)} conversations ...")
    started = time.monotonic()
    base = base_url.rstrip("/")
    gate = asyncio.Semaphore(32)
    ids = ["" for _ in plans]
    for user in users:
        user["conversations"] = []

    async def create(n: int, members: list[int]) -> None:
        owner = users[members[0]]
        body = {"member_ids": [users[m]["user_id"] for m in members[1:]], "title": "load"}
        headers = {"Authorization": f"Bearer {owner['token']}"}
        async with gate:
            created = await post_json(http, f"{base}/v1/conversations", body, headers)
        ids[n] = created["conversation_id"]

    await asyncio.gather(*(create(n, m) for n, m in enumerate(plans)))
    for n, members in enumerate(plans):
        for m in members:
            users[m]["conversations"].append(ids[n])
    return plans, ids, round(time.monotonic() - started, 1)
