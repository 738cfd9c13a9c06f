"""Group commit's pure core: which sends of a batch are written, and what each send gets back.

A batch is written by one statement (`store.insert_messages`); this module decides what goes
into it and maps what comes out to each send, without I/O, so every rule is unit-tested:

- Sends are identified by (sender, client_msg_id). Only the first send of a key in a batch (its
  leader) is written; a later one with the same key (a retry that overtook its own answer, or a
  concurrent twin) shares the leader's fate as a replay, exactly as it would in a later batch.
- Seqs follow arrival order within each conversation: leaders keep their arrival position
  (`arrival`), and the statement numbers the new messages of a conversation by it.
- Every send has its own outcome; nothing a send did wrong (not a member, a conflicting key)
  changes another send's outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from realchat.chat.store import MessageRecord


@dataclass(frozen=True)
class NewMessage:
    """One validated send, as the service hands it to the batcher."""

    conversation_id: uuid.UUID
    sender_id: uuid.UUID
    #: The client's client_msg_id: idempotency is scoped to the sender.
    idempotency_key: str
    content: str
    trace_context: dict[str, str]

    @property
    def key(self) -> tuple[uuid.UUID, str]:
        return (self.sender_id, self.idempotency_key)


@dataclass(frozen=True)
class Created:
    """The send was written by this batch."""

    message: MessageRecord


@dataclass(frozen=True)
class Existing:
    """A message with the send's key was already stored (by an earlier batch, or by its twin
    in this one): the send is a replay if it matches it, else an idempotency conflict."""

    message: MessageRecord


@dataclass(frozen=True)
class Refused:
    """Nothing was written: the sender is not a member, or the conversation does not exist."""


Stored = Created | Existing | Refused


@dataclass(frozen=True)
class BatchPlan:
    """`leaders`: indexes (in arrival order) of the sends the statement writes;
    `leader_of[i]`: the index of the send whose outcome send `i` shares (itself for a leader)."""

    leaders: tuple[int, ...]
    leader_of: tuple[int, ...]


def plan_batch(sends: Sequence[NewMessage]) -> BatchPlan:
    """Deduplicate a batch by (sender, client_msg_id): the first send of a key leads."""
    first: dict[tuple[uuid.UUID, str], int] = {}
    leader_of = [first.setdefault(send.key, i) for i, send in enumerate(sends)]
    leaders = tuple(i for i, leader in enumerate(leader_of) if leader == i)
    return BatchPlan(leaders=leaders, leader_of=tuple(leader_of))


def fan_out(plan: BatchPlan, written: Sequence[Stored]) -> list[Stored]:
    """Each send's outcome from its leader's (`written` is in `plan.leaders` order): a follower
    of a leader that created or found a message finds that message; of a refused one, is refused
    too (same sender, same conversation or a conflict it cannot win)."""
    if len(written) != len(plan.leaders):
        raise ValueError(f"{len(written)} outcomes for {len(plan.leaders)} leaders")
    by_leader = dict(zip(plan.leaders, written, strict=True))
    outcomes: list[Stored] = []
    for i, leader in enumerate(plan.leader_of):
        outcome = by_leader[leader]
        if leader != i and isinstance(outcome, Created):
            outcome = Existing(outcome.message)
        outcomes.append(outcome)
    return outcomes


def assign_seqs(conversations: Sequence[uuid.UUID], last_seqs: dict[uuid.UUID, int]) -> list[int]:
    """Seqs of new messages, in arrival order, after each conversation's `last_seq`: the rule the
    batch statement applies in SQL (row_number() over arrival within a conversation, counted
    from the counter it bumped once by the conversation's total), kept here as its
    specification and checked against the database by the integration tests."""
    next_seq = dict(last_seqs)
    seqs: list[int] = []
    for conversation in conversations:
        next_seq[conversation] = next_seq.get(conversation, 0) + 1
        seqs.append(next_seq[conversation])
    return seqs
