-- The chat write engine: conversations with their sequence counter, members with their cursor,
-- messages, and the transactional outbox with its dead letters.

CREATE TABLE conversations (
    id          uuid PRIMARY KEY,
    title       text NOT NULL DEFAULT '',
    created_by  uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- The per-conversation counter: `UPDATE ... SET last_seq = last_seq + 1 RETURNING last_seq`
    -- allocates the next seq and its row lock serialises the writers of this conversation only.
    last_seq    bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0)
);

CREATE TABLE conversation_members (
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL,
    joined_at       timestamptz NOT NULL DEFAULT now(),
    -- Highest seq the member acknowledged (delivered/read cursor); only moves forward.
    acked_seq       bigint NOT NULL DEFAULT 0 CHECK (acked_seq >= 0),
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_by_user ON conversation_members (user_id, conversation_id);

CREATE TABLE messages (
    id               uuid PRIMARY KEY,
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              bigint NOT NULL CHECK (seq > 0),
    sender_id        uuid NOT NULL,
    content          text NOT NULL,
    -- The client's `client_msg_id`: idempotency is scoped to the sender.
    idempotency_key  text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq),
    CONSTRAINT messages_sender_idempotency_key UNIQUE (sender_id, idempotency_key)
);

CREATE TABLE outbox (
    -- Ordered id: within one conversation, ids follow seq (both are taken under its row lock).
    id             bigserial PRIMARY KEY,
    -- Publishers lease shards (advisory locks); one conversation always maps to one shard.
    shard          integer NOT NULL CHECK (shard >= 0),
    topic          text NOT NULL,
    event_type     text NOT NULL,
    partition_key  text NOT NULL,
    payload        bytea NOT NULL,
    -- W3C trace context of the request that wrote the event, propagated as Kafka headers.
    trace_context  jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    attempts       integer NOT NULL DEFAULT 0,
    last_error     text,
    published_at   timestamptz
);
-- Partial: only the unpublished rows are indexed, so the publisher's scan stays small.
CREATE INDEX outbox_pending ON outbox (shard, id) WHERE published_at IS NULL;
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE dead_letters (
    id                bigserial PRIMARY KEY,
    outbox_id         bigint NOT NULL,
    shard             integer NOT NULL,
    topic             text NOT NULL,
    event_type        text NOT NULL,
    partition_key     text NOT NULL,
    payload           bytea NOT NULL,
    trace_context     jsonb NOT NULL,
    created_at        timestamptz NOT NULL,
    attempts          integer NOT NULL,
    error             text NOT NULL,
    dead_lettered_at  timestamptz NOT NULL DEFAULT now(),
    replayed_at       timestamptz
);
