"""The topics RealChat owns, by name (their creation is `realchat.bus.admin`).

Every topic is keyed so that one conversation (or one user, for presence) always maps to one
partition: that is what preserves order.
"""

from __future__ import annotations

MESSAGE_CREATED = "chat.message.created.v1"
MESSAGE_ACKNOWLEDGED = "chat.message.acknowledged.v1"
PRESENCE_ONLINE = "presence.user.online.v1"
PRESENCE_OFFLINE = "presence.user.offline.v1"
MEMBERSHIP_CHANGED = "chat.membership.changed.v1"
#: Changes of what a conversation holds: message edits and deletes, renames. One topic keyed by
#: conversation, so they stay in commit order among themselves; readers order them after the
#: messages they concern by `seq` (never by the order of two topics).
CONVERSATION_CHANGED = "chat.conversation.changed.v1"
#: The event types travelling on CONVERSATION_CHANGED (the `event-type` header).
MESSAGE_CHANGED = "chat.message.changed.v1"
CONVERSATION_RENAMED = "chat.conversation.renamed.v1"

#: Every topic of RealChat's: the ones created, and the ones a gateway consumes.
TOPICS = (
    MESSAGE_CREATED,
    MESSAGE_ACKNOWLEDGED,
    PRESENCE_ONLINE,
    PRESENCE_OFFLINE,
    MEMBERSHIP_CHANGED,
    CONVERSATION_CHANGED,
)
