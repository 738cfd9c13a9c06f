"""How many WebSockets one user and one client address may hold open on a gateway.

Every connection costs the gateway memory and a slot in every sweep; without a bound one
account or one address could open connections until the gateway runs out. Counted per gateway
instance (each has the same bounds: behind N instances a user has at most N times as many).
Addresses come from `X-Forwarded-For` only when the peer is a trusted proxy (`forwarded.py`).
Loopback is unlimited by default, like the auth service's per-address budgets: every tool of a
local stack (load tests included) shares it, while behind the balancer no client is loopback.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection
from typing import TypeVar

from realchat.forwarded import Network, is_trusted

K = TypeVar("K")


class ConnectionLimits:
    def __init__(
        self, per_user: int, per_address: int, unlimited_addresses: Collection[Network] = ()
    ) -> None:
        self._per_user = per_user
        self._per_address = per_address
        self._unlimited = tuple(unlimited_addresses)
        self._users: Counter[uuid.UUID] = Counter()
        self._addresses: Counter[str] = Counter()

    def counted_address(self, address: str | None) -> str | None:
        """The address whose connections are counted (None: not counted)."""
        if address is None or is_trusted(address, self._unlimited):
            return None
        return address

    def address_full(self, address: str | None) -> bool:
        return address is not None and self._addresses[address] >= self._per_address

    def user_full(self, user_id: uuid.UUID) -> bool:
        return self._users[user_id] >= self._per_user

    def opened(self, user_id: uuid.UUID, address: str | None) -> None:
        self._users[user_id] += 1
        if address is not None:
            self._addresses[address] += 1

    def closed(self, user_id: uuid.UUID, address: str | None) -> None:
        _drop(self._users, user_id)
        if address is not None:
            _drop(self._addresses, address)

    def __len__(self) -> int:
        """Users with a connection counted (what a leak would grow)."""
        return len(self._users)


def _drop(counter: Counter[K], key: K) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
