"""Operator provisioning without a database: usernames of a population, minted tokens."""

from __future__ import annotations

import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from realchat.auth.errors import InvalidInput
from realchat.auth.provisioning import mint_tokens, numbered_usernames
from realchat.auth.tokens import TokenIssuer


def test_minted_tokens_verify_as_the_users_they_name() -> None:
    issuer = TokenIssuer(Ed25519PrivateKey.generate(), "k1", "realchat", "realchat", 900)
    ids = [uuid.uuid4() for _ in range(3)]
    minted = mint_tokens(issuer, ids)
    verifier = issuer.verifier()
    assert [verifier.verify(m.access_token) for m in minted] == ids
    assert {m.expires_in for m in minted} == {900}
    assert len({m.access_token for m in minted}) == 3


def test_minted_tokens_carry_each_users_current_token_version() -> None:
    issuer = TokenIssuer(Ed25519PrivateKey.generate(), "k1", "realchat", "realchat", 900)
    logged_out, fresh = uuid.uuid4(), uuid.uuid4()
    minted = mint_tokens(issuer, [logged_out, fresh], {logged_out: 3})
    verifier = issuer.verifier()
    assert [verifier.claims(m.access_token).version for m in minted] == [3, 0]


def test_population_usernames_follow_the_contract() -> None:
    assert numbered_usernames("LT", 3) == ["lt_0", "lt_1", "lt_2"]
    with pytest.raises(InvalidInput):
        numbered_usernames("has space", 1)
    with pytest.raises(InvalidInput):
        numbered_usernames("x" * 31, 1)  # x..._0 is 33 characters
