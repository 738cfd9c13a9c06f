"""argon2id hashing off the event loop, and the dummy check for unknown users."""

from __future__ import annotations

import asyncio
import threading

import pytest
from argon2 import PasswordHasher

from realchat.auth.passwords import HashingBusy, Passwords, PriorityGate

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


class GatedHasher(PasswordHasher):
    """Hashes only once the test opens the gate: the queue fills up meanwhile."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8 * 1024, parallelism=1)
        self.gate = threading.Event()

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.gate.wait(timeout=10)
        return super().hash(password, salt=salt)


async def test_a_full_hashing_queue_refuses_at_once_and_keeps_room_for_logins() -> None:
    hasher = GatedHasher()
    passwords = Passwords(hasher, max_concurrency=1, max_waiting=4)
    running = [asyncio.create_task(passwords.hash("password one")) for _ in range(2)]
    await asyncio.sleep(0)  # one loop turn: both admitted, one hashing, one waiting
    # Sign-ups may fill half the queue (2 places): refused now, without waiting.
    with pytest.raises(HashingBusy):
        await passwords.hash("a sign-up", background=True)
    # Logins may use the rest.
    running += [asyncio.create_task(passwords.hash("a login")) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(HashingBusy):
        await passwords.hash("one login too many")
    hasher.gate.set()
    hashes = await asyncio.gather(*running)
    assert len(hashes) == 4
    # Once the queue has drained, sign-ups get places again.
    assert await passwords.hash("a sign-up", background=True)


async def test_waiting_logins_go_before_waiting_sign_ups() -> None:
    gate = PriorityGate(1)
    order: list[str] = []
    await gate.acquire(background=False)  # the slot is taken

    async def wait(name: str, background: bool) -> None:
        await gate.acquire(background)
        order.append(name)
        gate.release()

    waiters = [
        asyncio.create_task(wait("sign-up 1", True)),
        asyncio.create_task(wait("sign-up 2", True)),
        asyncio.create_task(wait("login", False)),
    ]
    await asyncio.sleep(0)  # all three queued
    gate.release()
    await asyncio.gather(*waiters)
    assert order == ["login", "sign-up 1", "sign-up 2"]


async def test_a_cancelled_waiter_does_not_lose_the_slot() -> None:
    gate = PriorityGate(1)
    await gate.acquire(background=False)
    cancelled = asyncio.create_task(gate.acquire(background=True))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.release()
    await asyncio.wait_for(gate.acquire(background=True), timeout=1)  # the slot is free again
