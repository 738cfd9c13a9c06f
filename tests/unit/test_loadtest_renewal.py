"""How the load generator keeps a long run's sessions on valid tokens: each session leaves at its
own point of its token's second half and the next one renews first, so a population minted in one
second does not expire (and reconnect, and renew) in one second; renewals are minted with the
signing key on the operator path and shared by a user's devices."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from realchat.auth.tokens import TokenIssuer
from realchat.loadtest.messages import SlowReading, TokenMinting, WorkerConfig, WorkerUser
from realchat.loadtest.renewal import (
    ROTATE_BETWEEN,
    TokenLifetime,
    issuer_for,
    needs_renewal,
    rotation_at,
)
from realchat.loadtest.worker import Worker

TTL_S = 3600
NOW = 1_800_000_000.0


def _issuer(now: float = NOW) -> TokenIssuer:
    return TokenIssuer(
        Ed25519PrivateKey.generate(), "k1", "realchat", "realchat", TTL_S, lambda: now
    )


def test_a_tokens_lifetime_is_read_from_its_claims() -> None:
    token, _ = _issuer().issue(uuid.uuid4())
    lifetime = TokenLifetime.of(token)
    assert (lifetime.issued_at, lifetime.expires_at, lifetime.seconds) == (NOW, NOW + TTL_S, TTL_S)


def test_a_token_is_renewed_from_its_half_life_on() -> None:
    lifetime = TokenLifetime(NOW, NOW + TTL_S)
    assert not needs_renewal(lifetime, NOW)
    assert not needs_renewal(lifetime, NOW + TTL_S / 2 - 1)
    assert needs_renewal(lifetime, NOW + TTL_S / 2)
    assert needs_renewal(lifetime, NOW + TTL_S + 5)


def test_sessions_on_tokens_minted_together_leave_spread_over_the_second_half() -> None:
    lifetime = TokenLifetime(NOW, NOW + TTL_S)
    rng = random.Random(7)
    times = sorted(rotation_at(lifetime, rng) - NOW for _ in range(10_000))
    low, high = ROTATE_BETWEEN
    # Every session leaves after its token needs renewing and well before it expires ...
    assert times[0] >= low * TTL_S > TTL_S / 2
    assert times[-1] <= high * TTL_S < TTL_S - 300
    # ... and not together: no minute of the window holds more than a tenth of them.
    per_minute = [0] * 61
    for t in times:
        per_minute[int(t // 60)] += 1
    assert max(per_minute) < 1_000


def _worker(tmp_path: Path, users: dict[str, WorkerUser], minting: TokenMinting | None) -> Worker:
    config = WorkerConfig(
        worker=0,
        base_url="http://127.0.0.1:1",
        ws_url="",
        source_ip=None,
        slow=SlowReading(),
        max_pending_per_connection=8,
        users=users,
        connections=[],
        minting=minting,
    )
    return Worker(config)


def _minting(tmp_path: Path) -> tuple[TokenMinting, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "signing.pem"
    path.write_bytes(pem)
    return TokenMinting(str(path), "k1", "realchat", "realchat-api", TTL_S), key


async def test_a_renewal_is_minted_for_the_user_and_shared_by_its_devices(tmp_path: Path) -> None:
    minting, key = _minting(tmp_path)
    user_id = uuid.uuid4()
    old, _ = _issuer(NOW - TTL_S).issue(user_id)
    worker = _worker(tmp_path, {"0": WorkerUser("u0", "pw", old, ["c1"], str(user_id))}, minting)
    user = worker.users["0"]

    await worker.renew_token(user, old)
    renewed = user.token
    assert renewed != old
    verifier = TokenIssuer(key, "k1", "realchat", "realchat-api", TTL_S).verifier()
    assert verifier.verify(renewed) == user_id
    assert user.lifetime == TokenLifetime.of(renewed)
    assert not needs_renewal(user.lifetime, user.lifetime.issued_at + 1)

    # A second device that saw the same stale token finds it renewed: no second renewal.
    await worker.renew_token(user, old)
    assert user.token == renewed
    assert worker.counts["token_renewals"] == 1


def test_minting_refuses_a_key_file_that_is_not_a_signing_key(tmp_path: Path) -> None:
    path = tmp_path / "not-a-key.pem"
    path.write_text("hello")
    with pytest.raises(Exception, match="REALCHAT_AUTH__PRIVATE_KEY_FILE"):
        issuer_for(TokenMinting(str(path), "k1", "realchat", "realchat", TTL_S))
