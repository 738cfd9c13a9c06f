"""Who may join a conversation and who may take someone out of it: consent and an exit.

Pure rules over what the adding or removing transaction read (under the conversation's lock);
the SQL is `store.py`'s.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from realchat.chat.errors import InvalidArgument, NotFound, PermissionDenied
from realchat.contract.error_codes import ErrorCode
from realchat.events.models import MembershipChange

#: How many unknown or refused ids an error names (the rest are counted).
_NAMED = 5


@dataclass(frozen=True)
class Candidate:
    """A user someone wants to add, as the database sees them."""

    user_id: uuid.UUID
    #: An account with this id exists.
    known: bool
    #: The actor and this user blocked one another (either way).
    blocked: bool
    #: Already a member (adding them changes nothing).
    member: bool


def _named(ids: list[uuid.UUID]) -> str:
    shown = ", ".join(str(i) for i in ids[:_NAMED])
    return shown if len(ids) <= _NAMED else f"{shown} and {len(ids) - _NAMED} more"


def additions(candidates: list[Candidate], members_now: int, max_members: int) -> list[uuid.UUID]:
    """The users to add, or raise: made-up ids (`unknown_users`), users who blocked the actor or
    whom the actor blocked (`blocked`), or more members than the conversation may hold in all
    (`too_many_members`). Nothing is added unless everyone may be."""
    unknown = [c.user_id for c in candidates if not c.known]
    if unknown:
        raise InvalidArgument(ErrorCode.UNKNOWN_USERS, f"no such users: {_named(unknown)}")
    blocked = [c.user_id for c in candidates if c.blocked]
    if blocked:
        raise PermissionDenied(
            ErrorCode.BLOCKED, f"these users cannot be added by you: {_named(blocked)}"
        )
    new = [c.user_id for c in candidates if not c.member]
    if members_now + len(new) > max_members:
        raise InvalidArgument(
            ErrorCode.TOO_MANY_MEMBERS,
            f"a conversation has at most {max_members} members ({members_now} now)",
        )
    return new


def removal(
    actor: uuid.UUID,
    target: uuid.UUID,
    creator: uuid.UUID,
    *,
    actor_is_member: bool,
    target_is_member: bool,
) -> MembershipChange:
    """`left` when members take themselves out, `removed` when the creator takes out another
    member; raise otherwise."""
    if not actor_is_member:
        raise PermissionDenied(ErrorCode.NOT_A_MEMBER, "you are not a member of this conversation")
    if not target_is_member:
        raise NotFound(ErrorCode.MEMBER_NOT_FOUND, "this user is not a member of the conversation")
    if actor == target:
        return "left"
    if actor != creator:
        raise PermissionDenied(
            ErrorCode.NOT_THE_CREATOR, "only the conversation's creator can remove other members"
        )
    return "removed"
