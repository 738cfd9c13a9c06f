"""argon2id hashing off the event loop, and the dummy check for unknown users."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from realchat.auth.passwords import Passwords

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Cheap parameters: these tests are about behaviour, not cost.
FAST = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


async def test_hash_is_argon2id_and_verifies_only_the_same_password() -> None:
    passwords = Passwords(FAST)
    stored = await passwords.hash("correct horse")
    assert stored.startswith("$argon2id$")
    assert await passwords.verify(stored, "correct horse")
    assert not await passwords.verify(stored, "correct horsf")
    assert await passwords.hash("correct horse") != stored, "salted"


async def test_unknown_user_check_never_succeeds() -> None:
    passwords = Passwords(FAST)
    assert not await passwords.verify(None, "anything at all")
    assert not await passwords.verify(None, "anything at all")


async def test_corrupt_stored_hash_is_a_mismatch_not_a_crash() -> None:
    assert not await Passwords(FAST).verify("not-a-hash", "whatever1")


async def test_hashes_made_with_other_parameters_need_a_rehash() -> None:
    stored = await Passwords(FAST).hash("correct horse")
    assert not Passwords(FAST).needs_rehash(stored)
    assert Passwords().needs_rehash(stored)
    assert not Passwords().needs_rehash("not-a-hash")


async def test_default_parameters_are_rfc_9106_low_memory() -> None:
    stored = await Passwords().hash("correct horse")
    assert "$m=65536,t=3,p=4$" in stored
