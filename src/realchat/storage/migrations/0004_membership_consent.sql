-- Consent in membership: a user may block another (no adding them to conversations, no presence
-- either way), and the one rule of who sees whose presence lives here, used by the chat service
-- (presence reads) and the presence service (who is told of a transition) alike.

CREATE TABLE user_blocks (
    blocker     uuid NOT NULL,
    blocked     uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker, blocked),
    CHECK (blocker <> blocked)
);
CREATE INDEX user_blocks_by_blocked ON user_blocks (blocked, blocker);

-- Users who may see `viewer`'s presence and whose presence `viewer` may see: those sharing a
-- conversation with them (a left member's row is gone), minus anyone either of the two blocked.
CREATE FUNCTION presence_peers(viewer uuid) RETURNS SETOF uuid
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT other.user_id
      FROM conversation_members mine
      JOIN conversation_members other ON other.conversation_id = mine.conversation_id
     WHERE mine.user_id = viewer
       AND other.user_id <> viewer
       AND NOT EXISTS (SELECT 1 FROM user_blocks b
                        WHERE (b.blocker = viewer AND b.blocked = other.user_id)
                           OR (b.blocker = other.user_id AND b.blocked = viewer))
$$;
