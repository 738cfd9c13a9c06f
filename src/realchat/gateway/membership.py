"""Membership changes from the bus, told to the local connections of everyone concerned.

Who gets a conversation's messages, receipts and history is the chat service's to say (each
event names its recipients, fixed under the conversation's lock; each history read checks
membership and reads nothing past the seq it was checked at, so a backfill of a user who left
meanwhile ends at its next page). This tells the members' clients, on every gateway, through a
`member` frame, the users who left or were removed included.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from collections.abc import Set as AbstractSet

from realchat.contract.frames import MemberFrame, encode
from realchat.events.models import MembershipChanged
from realchat.gateway.connection import Connection
from realchat.gateway.wsframe import text_frame

ConnectionsOf = Callable[[uuid.UUID], AbstractSet[Connection]]


def member_frame(event: MembershipChanged) -> bytes:
    return text_frame(
        encode(
            MemberFrame(
                conversation_id=str(event.conversation_id),
                change=event.change,
                user_ids=[str(u) for u in event.user_ids],
                by=str(event.by),
            )
        )
    )


def dispatch_membership(event: MembershipChanged, connections_of: ConnectionsOf) -> int:
    """Tell the recipients' local connections; how many were told."""
    frame: bytes | None = None
    offered = 0
    for user_id in event.recipients:
        for connection in connections_of(user_id):
            if frame is None:
                frame = member_frame(event)
            connection.push_frame(frame)
            offered += 1
    return offered
