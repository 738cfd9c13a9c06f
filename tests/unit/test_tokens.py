"""Access tokens: what verifies, what is refused and why, the JWKS, and key loading."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from realchat.auth.keys import generate_keypair
from realchat.auth.tokens import (
    VERIFIED_TOKENS,
    InvalidToken,
    KeyConfigError,
    TokenIssuer,
    TokenVerifier,
    jwks,
    load_issuer,
    load_verifier,
)
from realchat.config import AuthSettings

KID = "test-key-1"
ISSUER = "realchat"
AUDIENCE = "realchat"
TTL_S = 600


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def issuer(key: Ed25519PrivateKey) -> TokenIssuer:
    return TokenIssuer(key, KID, ISSUER, AUDIENCE, TTL_S)


@pytest.fixture
def verifier(key: Ed25519PrivateKey) -> TokenVerifier:
    return TokenVerifier({KID: key.public_key()}, ISSUER, AUDIENCE)


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as error:
        verifier.verify(token)
    return error.value.reason


def signed(key: Ed25519PrivateKey, claims: dict[str, Any], kid: str = KID) -> str:
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def claims_for(user: uuid.UUID, **override: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": str(user),
        "iat": now,
        "exp": now + 60,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": uuid.uuid4().hex,
    }
    claims.update(override)
    return {k: v for k, v in claims.items() if v is not None}


def test_issued_token_verifies_to_its_user_with_the_documented_claims(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    user = uuid.uuid4()
    token, expires_in = issuer.issue(user)
    assert expires_in == TTL_S
    assert verifier.verify(token) == user
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == KID
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == {"sub", "iat", "exp", "iss", "aud", "jti", "ver"}
    assert claims["sub"] == str(user)
    assert claims["exp"] - claims["iat"] == TTL_S
    assert (claims["iss"], claims["aud"]) == (ISSUER, AUDIENCE)
    assert issuer.issue(user)[0] != token, "every token has its own jti"


def test_expired_token_is_refused(key: Ed25519PrivateKey, verifier: TokenVerifier) -> None:
    long_ago = TokenIssuer(key, KID, ISSUER, AUDIENCE, TTL_S, clock=lambda: time.time() - 3600)
    assert refusal(verifier, long_ago.issue(uuid.uuid4())[0]) == "expired"


def test_a_token_verified_before_is_still_refused_once_it_expires(
    key: Ed25519PrivateKey, verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = uuid.uuid4()
    token = signed(key, claims_for(user))  # expires in 60 s
    assert verifier.verify(token) == user
    assert verifier.verify(token) == user  # again: remembered, same answer
    later = time.time() + 60 + 11  # past `exp` and the 10 s leeway
    monkeypatch.setattr(time, "time", lambda: later)
    assert refusal(verifier, token) == "expired"


def test_remembering_verified_tokens_is_bounded_and_changes_no_answer(
    key: Ed25519PrivateKey, verifier: TokenVerifier
) -> None:
    users = [uuid.uuid4() for _ in range(VERIFIED_TOKENS + 10)]
    tokens = [signed(key, claims_for(user)) for user in users]
    for token, user in zip(tokens, users, strict=True):
        assert verifier.verify(token) == user
    assert len(verifier._verified) == VERIFIED_TOKENS
    # The first ones were forgotten and verify again from scratch; a tampered one still fails.
    assert verifier.verify(tokens[0]) == users[0]
    head, payload, signature = tokens[1].split(".")
    # A character in the middle, changed for sure (the last one carries padding bits).
    tampered = signature[:10] + ("B" if signature[10] != "B" else "C") + signature[11:]
    assert refusal(verifier, f"{head}.{payload}.{tampered}") == "bad_signature"


def test_small_clock_skew_is_tolerated(key: Ed25519PrivateKey, verifier: TokenVerifier) -> None:
    ahead = TokenIssuer(key, KID, ISSUER, AUDIENCE, TTL_S, clock=lambda: time.time() + 5)
    user = uuid.uuid4()
    assert verifier.verify(ahead.issue(user)[0]) == user


def test_token_signed_by_another_key_is_refused(verifier: TokenVerifier) -> None:
    impostor = TokenIssuer(Ed25519PrivateKey.generate(), KID, ISSUER, AUDIENCE, TTL_S)
    assert refusal(verifier, impostor.issue(uuid.uuid4())[0]) == "bad_signature"


def test_tampered_payload_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token, _ = issuer.issue(uuid.uuid4())
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(uuid.uuid4())
    forged = b64(json.dumps(claims))
    assert refusal(verifier, f"{header}.{forged}.{signature}") == "bad_signature"


@pytest.mark.parametrize(
    ("audience", "issuer_name", "reason"),
    [("someone-else", ISSUER, "wrong_audience"), (AUDIENCE, "someone-else", "wrong_issuer")],
)
def test_token_for_another_audience_or_from_another_issuer_is_refused(
    key: Ed25519PrivateKey,
    verifier: TokenVerifier,
    audience: str,
    issuer_name: str,
    reason: str,
) -> None:
    other = TokenIssuer(key, KID, issuer_name, audience, TTL_S)
    assert refusal(verifier, other.issue(uuid.uuid4())[0]) == reason


def test_unknown_key_id_is_refused(key: Ed25519PrivateKey, verifier: TokenVerifier) -> None:
    other_kid = TokenIssuer(key, "rotated-away", ISSUER, AUDIENCE, TTL_S)
    assert refusal(verifier, other_kid.issue(uuid.uuid4())[0]) == "unknown_kid"
    assert refusal(verifier, signed(key, claims_for(uuid.uuid4()), kid="")) == "unknown_kid"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "not.a.jwt.at.all", "e30.e30.e30"])
def test_malformed_tokens_are_refused(verifier: TokenVerifier, token: str) -> None:
    assert refusal(verifier, token) == "malformed"


def test_unsigned_and_symmetric_tokens_are_refused(
    key: Ed25519PrivateKey, verifier: TokenVerifier
) -> None:
    claims = claims_for(uuid.uuid4())
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": KID})
    assert refusal(verifier, unsigned) == "malformed"
    # Algorithm confusion: an HMAC "signed" with the public key must not pass as EdDSA.
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'kid': KID}))}.{b64(json.dumps(claims))}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    symmetric = f"{signing_input}.{b64(mac)}"
    assert refusal(verifier, symmetric) == "malformed"


@pytest.mark.parametrize("missing", ["exp", "iat", "jti", "sub"])
def test_tokens_without_a_required_claim_are_refused(
    key: Ed25519PrivateKey, verifier: TokenVerifier, missing: str
) -> None:
    token = signed(key, claims_for(uuid.uuid4(), **{missing: None}))
    assert refusal(verifier, token) == "missing_claim"


def test_subject_must_be_a_user_id(key: Ed25519PrivateKey, verifier: TokenVerifier) -> None:
    token = signed(key, claims_for(uuid.uuid4(), sub="alice"))
    assert refusal(verifier, token) == "bad_subject"


def test_jwks_publishes_the_verifying_key(key: Ed25519PrivateKey, issuer: TokenIssuer) -> None:
    document = jwks(key.public_key(), KID)
    assert list(document) == ["keys"]
    [entry] = document["keys"]
    assert entry == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": entry["x"],
        "kid": KID,
        "alg": "EdDSA",
        "use": "sig",
    }
    raw = base64.urlsafe_b64decode(entry["x"] + "=" * (-len(entry["x"]) % 4))
    assert raw == key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    published = jwt.PyJWK(entry).key
    user = uuid.uuid4()
    from_jwks = TokenVerifier({entry["kid"]: published}, ISSUER, AUDIENCE)
    assert from_jwks.verify(issuer.issue(user)[0]) == user


def test_keys_load_from_the_generated_pem_files(tmp_path: Path) -> None:
    private, public = generate_keypair(tmp_path / "secrets")
    settings = AuthSettings(private_key_file=private, public_key_file=public, key_id=KID)
    user = uuid.uuid4()
    token, _ = load_issuer(settings).issue(user)
    assert load_verifier(settings).verify(token) == user


def test_missing_key_settings_are_named() -> None:
    with pytest.raises(KeyConfigError, match="REALCHAT_AUTH__PRIVATE_KEY_FILE is not set"):
        load_issuer(AuthSettings())
    with pytest.raises(KeyConfigError, match="REALCHAT_AUTH__PUBLIC_KEY_FILE is not set"):
        load_verifier(AuthSettings())


def test_unreadable_or_wrong_key_files_are_named(tmp_path: Path) -> None:
    absent = tmp_path / "absent.pem"
    with pytest.raises(KeyConfigError, match="REALCHAT_AUTH__PRIVATE_KEY_FILE: cannot read"):
        load_issuer(AuthSettings(private_key_file=absent))
    private, public = generate_keypair(tmp_path)
    with pytest.raises(KeyConfigError, match=r"REALCHAT_AUTH__PRIVATE_KEY_FILE: .* not an"):
        load_issuer(AuthSettings(private_key_file=public))
    with pytest.raises(KeyConfigError, match=r"REALCHAT_AUTH__PUBLIC_KEY_FILE: .* not a"):
        load_verifier(AuthSettings(public_key_file=private))


def test_generated_key_pair_is_owner_only_and_kept_across_calls(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    private, public = generate_keypair(directory)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    first = (private.read_bytes(), public.read_bytes())
    public.unlink()
    assert generate_keypair(directory) == (private, public)
    assert (private.read_bytes(), public.read_bytes()) == first
    assert sorted(p.name for p in directory.iterdir()) == sorted([private.name, public.name])
