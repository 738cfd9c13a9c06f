"""The bench workload: its two scenarios, the message every send carries, and the deterministic
ids of its conversations and users (computable in SQL too, so pgbench addresses the rows that
were seeded)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

#: A typical short chat message. No ':' in it: pgbench would read `:word` as a variable.
CONTENT = "Hello! A short chat message, about the length people usually type."
CONVERSATION_PREFIX = "c0000000"
USER_PREFIX = "a0000000"
_UUID_MIDDLE = "-0000-4000-8000-"


@dataclass(frozen=True)
class Scenario:
    name: str
    conversations: int


SCENARIOS = (Scenario("hot-1", 1), Scenario("spread-1000", 1000))


def indexed_uuid(prefix: str, index: int) -> uuid.UUID:
    """The `index`-th bench conversation or user (decimal digits are valid hex)."""
    return uuid.UUID(f"{prefix}{_UUID_MIDDLE}{index:012d}")


def indexed_uuid_sql(prefix: str, index_sql: str) -> str:
    """`indexed_uuid` as a SQL expression of an integer expression."""
    return f"('{prefix}{_UUID_MIDDLE}' || lpad(({index_sql})::text, 12, '0'))::uuid"
