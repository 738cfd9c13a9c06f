"""RealChat's side of the benchmark: users, one conversation, REST publishing, process groups.

Subscribers are users with several devices each, as few as the gateways' connections-per-user
limit allows (`subscriber_users`): what a delivery costs the gateway is per connection, while
every event carries its conversation's member list (1,000 members would make each event 40 KB
of recipients to decode). The accounts are created in bulk through the operator path when the
stack's database and signing key are at hand (an argon2id hash per account over REST is ~3 a
second on 2 cores). Publishers are separate users, each kept well under the per-user send limit
(20/s) at `SENDS_PER_SENDER` messages per second.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from realchat.loadtest.fanout.measure import Group
from realchat.loadtest.fanout.plan import ws_base
from realchat.loadtest.fanout.publisher import Publish
from realchat.loadtest.population import Operator, ProvisioningError, bulk_accounts, post_json
from realchat.stack.supervisor import Stack

#: A quarter of the per-user limit: an open loop that fell behind catches up in a burst.
SENDS_PER_SENDER = 5
#: A send refused with 429 anyway is tried again this many times (its stamp keeps the first
#: attempt's time, so the wait shows as latency).
RATE_LIMITED_RETRIES = 5
RATE_LIMITED_BACKOFF_S = 0.2
PASSWORD = "fan-out bench password"
REGISTER_CONCURRENCY = 4
#: Process groups by component-name prefix; `gateways` adds up every instance.
COMPONENT_GROUPS = {
    "gateways": "gateway",
    "haproxy": "balancer",
    "chat": "chat",
    "postgres": "postgres",
    "kafka": "kafka",
    "outbox-publisher": "outbox-publisher",
    "auth": "auth-service",
    "presence": "presence",
    "redis": "redis",
}


def senders_for(rate: float) -> int:
    return max(1, math.ceil(rate / SENDS_PER_SENDER))


def ws_url(entrypoint: str, token: str) -> str:
    return f"{ws_base(entrypoint)}/v1/ws?token={token}"


def groups(pids: Mapping[str, int]) -> dict[str, Group]:
    """Each group's components' pids (whole process trees). The gateways count as one: each
    holds a share of the connections, so only their sum divides by all of them."""
    found = {
        group: Group(tuple(pid for name, pid in pids.items() if name.startswith(prefix)))
        for group, prefix in COMPONENT_GROUPS.items()
    }
    return {name: group for name, group in found.items() if group.pids}


def edge_groups(pids: Mapping[str, int]) -> dict[str, Group]:
    """What an idle connection can cost memory in: the gateways and the balancer."""
    return {name: group for name, group in groups(pids).items() if name in ("gateways", "haproxy")}


@dataclass(frozen=True)
class Audience:
    subscriber_tokens: list[str]
    sender_tokens: list[str]
    conversation_id: str
    seconds: float


def subscriber_users(wanted: int, connections: int, per_user_limit: int) -> int:
    """Enough accounts that `connections` spread over them stay within a gateway's limit of
    connections per user (a subscriber past it would be refused with 1008)."""
    return max(wanted, math.ceil(connections / per_user_limit))


async def provision(
    http: aiohttp.ClientSession,
    base_url: str,
    subscribers: int,
    senders: int,
    operator: Operator | None = None,
) -> Audience:
    """Fresh users (a run prefix keeps names unique) and one conversation holding all of them:
    in bulk with the `operator`'s database and signing key, else signed up over REST."""
    run = uuid.uuid4().hex[:8]
    loop = asyncio.get_running_loop()
    started = loop.time()
    names = [f"fo{run}s{n}" for n in range(subscribers)] + [f"fo{run}p{n}" for n in range(senders)]
    if operator is not None:
        users = await bulk_accounts(operator, names, PASSWORD)
    else:
        gate = asyncio.Semaphore(REGISTER_CONCURRENCY)

        async def register(name: str) -> dict[str, Any]:
            credentials = {"username": name, "password": PASSWORD}
            async with gate:
                return await _sign_up(http, base_url, credentials)

        users = list(await asyncio.gather(*(register(name) for name in names)))
    owner, others = users[-1], users[:-1]
    conversation = await post_json(
        http,
        f"{base_url}/v1/conversations",
        {"member_ids": [u["user_id"] for u in others], "title": "fan-out bench"},
        {"Authorization": f"Bearer {owner['token']}"},
    )
    return Audience(
        subscriber_tokens=[u["token"] for u in users[:subscribers]],
        sender_tokens=[u["token"] for u in users[subscribers:]],
        conversation_id=str(conversation["conversation_id"]),
        seconds=round(loop.time() - started, 1),
    )


async def _sign_up(
    http: aiohttp.ClientSession, base_url: str, credentials: dict[str, str]
) -> dict[str, Any]:
    """A new user's id and token. The names are this run's own, so "taken" means an earlier
    attempt of ours went through although its reply was lost (a 5xx or a timeout on a busy
    machine, and `post_json` tried again): the user is looked up instead."""
    try:
        user_id = (await post_json(http, f"{base_url}/v1/users", credentials))["user_id"]
    except ProvisioningError as exc:
        if exc.status != 409:
            raise
        user_id = None
    token = (await post_json(http, f"{base_url}/v1/tokens", credentials))["access_token"]
    if user_id is None:
        url = f"{base_url}/v1/users/by-username/{credentials['username']}"
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as reply:
            if reply.status != 200:
                raise ProvisioningError(f"GET {url}: {reply.status} {await reply.text()}")
            user_id = (await reply.json())["user_id"]
    return {"user_id": user_id, "token": token}


def rest_publisher(http: aiohttp.ClientSession, entrypoint: str, audience: Audience) -> Publish:
    """A REST send per message, senders taking turns; each `client_msg_id` is new (a reused one
    would be an idempotent replay, or a conflict)."""
    url = f"{entrypoint}/v1/conversations/{audience.conversation_id}/messages"
    headers = [{"Authorization": f"Bearer {t}"} for t in audience.sender_tokens]

    async def publish(seq: int, payload: str) -> None:
        body = {"client_msg_id": uuid.uuid4().hex, "content": payload}
        for attempt in range(RATE_LIMITED_RETRIES + 1):
            async with http.post(url, json=body, headers=headers[seq % len(headers)]) as reply:
                if reply.status in (200, 201):
                    return
                if reply.status != 429 or attempt == RATE_LIMITED_RETRIES:
                    raise RuntimeError(f"send: {reply.status} {await reply.text()}")
            await asyncio.sleep(RATE_LIMITED_BACKOFF_S * (attempt + 1))

    return publish


async def restart_gateways(stack: Stack, names: list[str]) -> None:
    """A fresh gateway for the idle measurement: warm-up memory is not per-connection memory."""
    for name in names:
        await stack.stop_component(name)
        await stack.start_component(name)
