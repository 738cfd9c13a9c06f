import asyncio
import uuid

import pytest

from realchat.chat.errors import Unauthenticated
from realchat.chat.identity import InternalCredential
from realchat.chat.rpc import internal_metadata

TOKEN = "a-long-enough-internal-token"


def test_trusted_caller_acts_for_the_named_user() -> None:
    user = uuid.uuid4()
    metadata = dict(internal_metadata(TOKEN, user))
    assert asyncio.run(InternalCredential(TOKEN).authenticate(metadata)) == user


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ({}, "missing_credentials"),
        ({"authorization": "Basic abc"}, "missing_credentials"),
        ({"authorization": "Bearer not-the-token-at-all"}, "invalid_credentials"),
        ({"authorization": f"Bearer {TOKEN}"}, "missing_acting_user"),
        ({"authorization": f"Bearer {TOKEN}", "x-realchat-user-id": "bob"}, "missing_acting_user"),
    ],
)
def test_anything_else_is_unauthenticated(metadata: dict[str, str], code: str) -> None:
    with pytest.raises(Unauthenticated) as error:
        asyncio.run(InternalCredential(TOKEN).authenticate(metadata))
    assert error.value.code == code


def test_short_tokens_are_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        InternalCredential("short")
