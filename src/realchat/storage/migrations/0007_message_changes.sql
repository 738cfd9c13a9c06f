-- Edits, deletes and renames. A message keeps its seq for life; what changes is its version
-- (1 when sent, +1 per edit or delete), its content (empty once deleted: a tombstone) and when.
-- Metadata-only column additions (constant defaults): no rewrite of the messages table.

ALTER TABLE messages
    ADD COLUMN version    integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD COLUMN edited_at  timestamptz,
    ADD COLUMN deleted_at timestamptz,
    -- The conversation's change counter at the message's last change (null: never changed):
    -- a client that was away asks for the changes after the counter it last saw.
    ADD COLUMN change_seq bigint;

-- Counts the conversation's edits and deletes (taken under its row lock, like last_seq).
ALTER TABLE conversations ADD COLUMN last_change bigint NOT NULL DEFAULT 0;

-- Changed messages only: the catch-up of a returning client reads this, never the messages.
CREATE INDEX messages_changes ON messages (conversation_id, change_seq)
    WHERE change_seq IS NOT NULL;

-- One row per edit, keyed like sends by the editor's own id for it (`client_change_id`): a retried
-- edit finds its first outcome instead of editing again (and never undoes a later edit).
CREATE TABLE message_changes (
    sender_id        uuid NOT NULL,
    idempotency_key  text NOT NULL,
    message_id       uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    version          integer NOT NULL,
    content          text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sender_id, idempotency_key)
);
