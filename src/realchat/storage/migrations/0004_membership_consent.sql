-- Consent in membership: a user may block another (no adding them to conversations, no presence
-- either way), and the rule of who sees whose presence, in one place: the chat service's presence
-- reads and the presence service's audience of a transition both use these functions.

CREATE TABLE user_blocks (
    blocker     uuid NOT NULL,
    blocked     uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker, blocked),
    CHECK (blocker <> blocked)
);
CREATE INDEX user_blocks_by_blocked ON user_blocks (blocked, blocker);

-- Whether either of the two blocked the other.
CREATE FUNCTION blocked_either_way(a uuid, b uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM user_blocks
                    WHERE (blocker = a AND blocked = b) OR (blocker = b AND blocked = a))
$$;

-- Whether `viewer` and `other` see each other's presence: they share a conversation (a member
-- who left has no row) and neither blocked the other.
CREATE FUNCTION presence_visible(viewer uuid, other uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1
                     FROM conversation_members mine
                     JOIN conversation_members theirs
                       ON theirs.conversation_id = mine.conversation_id
                    WHERE mine.user_id = viewer AND theirs.user_id = other)
       AND NOT blocked_either_way(viewer, other)
$$;

-- Everyone `presence_visible` holds for, with `viewer`: who is told of a transition.
CREATE FUNCTION presence_peers(viewer uuid) RETURNS SETOF uuid
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT other.user_id
      FROM conversation_members mine
      JOIN conversation_members other ON other.conversation_id = mine.conversation_id
     WHERE mine.user_id = viewer
       AND other.user_id <> viewer
       AND NOT blocked_either_way(viewer, other.user_id)
$$;
