"""The gateway's session guard: tokens checked at the door, sessions closed (4001) when their
token is revoked or expires, and a gap in the revocation channel healed by a re-check."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.exceptions import ConnectionError as RedisConnectionError

from realchat.auth.revocation import parse_announcement
from realchat.auth.tokens import InvalidToken, TokenClaims, TokenIssuer, TokenVerifier
from realchat.gateway.connection import Connection
from realchat.gateway.sessions import COMPACT_SLACK, SessionGuard
from tests.unit.gateway.fakes import FakeSink

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY = Ed25519PrivateKey.generate()
ISSUER = TokenIssuer(KEY, "k1", "realchat", "realchat", 600)
VERIFIER = TokenVerifier({"k1": KEY.public_key()}, "realchat", "realchat")


class Versions:
    """Redis's mirror of the token versions, in memory (`down`: every call fails)."""

    def __init__(self) -> None:
        self.current_of: dict[uuid.UUID, int] = {}
        self.down = False

    async def current(self, user_ids: list[uuid.UUID]) -> list[int]:
        if self.down:
            raise RedisConnectionError("redis is away")
        return [self.current_of.get(u, 0) for u in user_ids]


def guard(versions: Versions, now: float = 1000.0) -> SessionGuard:
    return SessionGuard(VERIFIER, versions, clock=lambda: now)  # type: ignore[arg-type]


def session(user: uuid.UUID) -> tuple[Connection, FakeSink]:
    sink = FakeSink()
    return Connection(user, sink, queue_size=8, close_grace_s=0.1, on_gap=lambda c, x: None), sink


async def closed_with(connection: Connection) -> int | None:
    for _ in range(20):
        await asyncio.sleep(0)
    return connection.close_code


async def test_a_token_below_the_users_version_is_refused_at_the_door() -> None:
    user = uuid.uuid4()
    versions = Versions()
    versions.current_of[user] = 2
    with pytest.raises(InvalidToken) as refused:
        await guard(versions).admit(ISSUER.issue(user, version=1)[0])
    assert refused.value.reason == "revoked"
    admitted = await guard(versions).admit(ISSUER.issue(user, version=2)[0])
    assert (admitted.user_id, admitted.version) == (user, 2)


async def test_a_bad_token_is_refused_whatever_redis_says() -> None:
    with pytest.raises(InvalidToken):
        await guard(Versions()).admit("not-a-token")


async def test_redis_away_fails_open_for_a_valid_token() -> None:
    versions = Versions()
    versions.down = True
    user = uuid.uuid4()
    assert (await guard(versions).admit(ISSUER.issue(user)[0])).user_id == user


async def test_a_revocation_closes_the_older_sessions_of_that_user_only() -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    sessions = guard(Versions())
    old, _ = session(alice)
    renewed, _ = session(alice)
    bobs, _ = session(bob)
    sessions.track(old, TokenClaims(alice, 0, 2000.0))
    sessions.track(renewed, TokenClaims(alice, 1, 2000.0))
    sessions.track(bobs, TokenClaims(bob, 0, 2000.0))
    assert sessions.revoked(alice, 1) == 1
    assert await closed_with(old) == 4001
    assert renewed.close_code is None
    assert bobs.close_code is None
    assert len(sessions) == 2


async def test_expired_sessions_are_closed_and_untracked_ones_left_alone() -> None:
    user = uuid.uuid4()
    sessions = guard(Versions())
    soon, _ = session(user)
    later, _ = session(user)
    gone, _ = session(user)
    sessions.track(soon, TokenClaims(user, 0, 1010.0))
    sessions.track(later, TokenClaims(user, 0, 1100.0))
    sessions.track(gone, TokenClaims(user, 0, 1010.0))
    sessions.untrack(gone)  # disconnected before its token expired
    assert sessions.expire(now=1009.0) == 0
    assert sessions.expire(now=1010.0) == 1
    assert await closed_with(soon) == 4001
    assert later.close_code is None
    assert gone.close_code is None


async def test_a_recheck_closes_what_was_revoked_while_the_channel_was_lost() -> None:
    user, other = uuid.uuid4(), uuid.uuid4()
    versions = Versions()
    sessions = guard(versions)
    revoked, _ = session(user)
    kept, _ = session(other)
    sessions.track(revoked, TokenClaims(user, 0, 2000.0))
    sessions.track(kept, TokenClaims(other, 0, 2000.0))
    versions.current_of[user] = 1  # announced while nobody listened
    await sessions.recheck()
    assert await closed_with(revoked) == 4001
    assert kept.close_code is None


async def test_announcements_are_parsed_strictly() -> None:
    user = uuid.uuid4()
    assert parse_announcement(f"{user} 3".encode()) == (user, 3)
    assert parse_announcement(b"nonsense") is None
    assert parse_announcement(f"{user} x") is None


async def test_churn_does_not_keep_closed_sessions_in_the_expiry_heap() -> None:
    sessions = guard(Versions())
    user = uuid.uuid4()
    kept, _ = session(user)
    sessions.track(kept, TokenClaims(user, 0, 5000.0))
    for _ in range(3000):  # sessions that come and go long before their tokens expire
        passing, _ = session(user)
        sessions.track(passing, TokenClaims(user, 0, 5000.0))
        sessions.untrack(passing)
    assert len(sessions) == 1
    assert sessions.expiry_entries <= 2 + COMPACT_SLACK + 1
    assert sessions.expire(now=5000.0) == 1  # the one still open is still watched
    assert await closed_with(kept) == 4001
