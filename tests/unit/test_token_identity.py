"""The chat service's callers: user access tokens, and the internal credential tried first."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from realchat.auth.keys import generate_keypair
from realchat.auth.tokens import KeyConfigError, TokenIssuer, TokenVerifier
from realchat.chat.errors import Unauthenticated
from realchat.chat.identity import FirstOf, InternalCredential, TokenAuthenticator
from realchat.chat.rpc import internal_metadata
from realchat.chat.server import authenticator
from realchat.config import AuthSettings, ChatSettings, Settings

INTERNAL = "a-long-enough-internal-token"
KEY = Ed25519PrivateKey.generate()
ISSUER = TokenIssuer(KEY, "k1", "realchat", "realchat", 600)


def token_authenticator() -> TokenAuthenticator:
    return TokenAuthenticator(TokenVerifier({"k1": KEY.public_key()}, "realchat", "realchat"))


def both() -> FirstOf:
    return FirstOf(InternalCredential(INTERNAL), token_authenticator())


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **extra}


def code_of(authenticator: FirstOf | TokenAuthenticator, metadata: dict[str, str]) -> str:
    with pytest.raises(Unauthenticated) as error:
        asyncio.run(authenticator.authenticate(metadata))
    return error.value.code


def test_a_user_token_names_the_acting_user() -> None:
    user = uuid.uuid4()
    token, _ = ISSUER.issue(user)
    assert asyncio.run(token_authenticator().authenticate(bearer(token))) == user
    assert asyncio.run(both().authenticate(bearer(token))) == user


def versions(current: dict[uuid.UUID, int]) -> TokenAuthenticator:
    """Checking revocation against `current` (users missing from it do not exist)."""

    async def version_of(user_id: uuid.UUID) -> int | None:
        return current.get(user_id)

    verifier = TokenVerifier({"k1": KEY.public_key()}, "realchat", "realchat")
    return TokenAuthenticator(verifier, version_of)


def test_a_token_of_the_current_version_is_accepted_and_an_older_one_refused() -> None:
    user = uuid.uuid4()
    old, _ = ISSUER.issue(user, version=2)
    current, _ = ISSUER.issue(user, version=3)
    authenticator = versions({user: 3})
    assert asyncio.run(authenticator.authenticate(bearer(current))) == user
    assert code_of(authenticator, bearer(old)) == "invalid_credentials"
    # Past the user's version (issued just as a check read the older one): accepted.
    assert asyncio.run(versions({user: 2}).authenticate(bearer(current))) == user


def test_a_token_of_a_user_who_does_not_exist_is_refused() -> None:
    token, _ = ISSUER.issue(uuid.uuid4())
    assert code_of(versions({}), bearer(token)) == "invalid_credentials"


def test_a_user_token_cannot_act_for_someone_else() -> None:
    user, victim = uuid.uuid4(), uuid.uuid4()
    token, _ = ISSUER.issue(user)
    assert (
        asyncio.run(both().authenticate(bearer(token, **{"x-realchat-user-id": str(victim)})))
        == user
    )


def test_the_internal_credential_still_works_beside_tokens() -> None:
    user = uuid.uuid4()
    assert asyncio.run(both().authenticate(dict(internal_metadata(INTERNAL, user)))) == user


def test_internal_credential_without_acting_user_is_not_retried_as_a_token() -> None:
    assert code_of(both(), bearer(INTERNAL)) == "missing_acting_user"


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        TokenIssuer(Ed25519PrivateKey.generate(), "k1", "realchat", "realchat", 600).issue(
            uuid.uuid4()
        )[0],
        TokenIssuer(KEY, "k1", "realchat", "realchat", 600, clock=lambda: time.time() - 7200).issue(
            uuid.uuid4()
        )[0],
    ],
    ids=["garbage", "other-key", "expired"],
)
def test_bad_tokens_are_invalid_credentials(token: str) -> None:
    assert code_of(token_authenticator(), bearer(token)) == "invalid_credentials"
    assert code_of(both(), bearer(token)) == "invalid_credentials"


def test_no_credentials_at_all() -> None:
    assert code_of(both(), {}) == "missing_credentials"
    assert code_of(both(), {"authorization": "Basic abc"}) == "missing_credentials"


def test_first_of_needs_an_authenticator() -> None:
    with pytest.raises(ValueError, match="at least one"):
        FirstOf()


def test_chat_server_accepts_tokens_only_once_a_public_key_is_configured(tmp_path: Path) -> None:
    _, public = generate_keypair(tmp_path)
    chat = ChatSettings(internal_token=SecretStr(INTERNAL))
    assert isinstance(authenticator(Settings(chat=chat, auth=AuthSettings())), InternalCredential)
    with_key = Settings(chat=chat, auth=AuthSettings(public_key_file=public))
    assert isinstance(authenticator(with_key), FirstOf)
    missing = Settings(chat=chat, auth=AuthSettings(public_key_file=tmp_path / "absent.pem"))
    with pytest.raises(KeyConfigError, match="REALCHAT_AUTH__PUBLIC_KEY_FILE"):
        authenticator(missing)
