-- Edits, deletes and renames. A message keeps its seq for life; what changes is its version
-- (1 when sent, +1 per edit or delete), its content (empty once deleted: a tombstone) and when.
-- Metadata-only column additions (constant defaults): no rewrite of the messages table.

ALTER TABLE messages
    ADD COLUMN version    integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD COLUMN edited_at  timestamptz,
    ADD COLUMN deleted_at timestamptz;

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
