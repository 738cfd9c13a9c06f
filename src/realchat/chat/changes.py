"""Who may edit or delete a message, and what a retried edit means: pure rules over what the
changing transaction read under the conversation's lock (the SQL is `changes_store.py`'s).

Only the sender changes a message (conversation admins, once roles exist, would be one more
rule here). A deleted message is a tombstone for good: it cannot be edited, and deleting it
again changes nothing. An edit is idempotent by its `client_change_id`: the same id with the
same message and content is the same edit (its result is returned, nothing is written), with
anything else a conflict."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from realchat.chat.errors import (
    FailedPrecondition,
    IdempotencyConflict,
    NotFound,
    PermissionDenied,
)
from realchat.contract.error_codes import ErrorCode


@dataclass(frozen=True)
class Target:
    """The message to change, as the transaction read it."""

    message_id: uuid.UUID
    sender_id: uuid.UUID
    deleted: bool


@dataclass(frozen=True)
class EarlierEdit:
    """What an earlier edit with the same client_change_id changed."""

    conversation_id: uuid.UUID
    seq: int
    content: str


def require_changeable(actor: uuid.UUID, target: Target | None, *, deleting: bool) -> bool:
    """Raise unless `actor` may change the message; False for a delete of a tombstone (nothing
    to do), True otherwise."""
    if target is None:
        raise NotFound(ErrorCode.MESSAGE_NOT_FOUND, "no message with this seq in the conversation")
    if target.sender_id != actor:
        raise PermissionDenied(ErrorCode.NOT_THE_SENDER, "only the sender may change a message")
    if target.deleted:
        if deleting:
            return False
        raise FailedPrecondition(ErrorCode.MESSAGE_DELETED, "a deleted message cannot be edited")
    return True


def is_replay(
    earlier: EarlierEdit | None, conversation_id: uuid.UUID, seq: int, content: str
) -> bool:
    """True if the edit was made before (return its message, write nothing); raise if its id
    was used for another edit."""
    if earlier is None:
        return False
    if (earlier.conversation_id, earlier.seq, earlier.content) != (conversation_id, seq, content):
        raise IdempotencyConflict(
            "client_change_id was already used for a different edit; use a new one"
        )
    return True
