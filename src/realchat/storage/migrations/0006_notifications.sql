-- Push notifications for offline devices (realchat/notifier): the devices' push tokens, each
-- user's notification settings, and the notifier's durable state. The decision to notify reads
-- the member's read position (conversation_members.acked_seq) when a notification falls due.

-- A device's push token, registered through `POST /v1/devices`. One token belongs to one device,
-- and a device to the account that registered the token last.
CREATE TABLE push_devices (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    platform    text NOT NULL CHECK (platform IN ('apns', 'fcm', 'webpush')),
    token       text NOT NULL CHECK (length(token) BETWEEN 1 AND 4096),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT push_devices_platform_token_key UNIQUE (platform, token)
);
CREATE INDEX push_devices_by_user ON push_devices (user_id);

CREATE TABLE notification_preferences (
    user_id         uuid PRIMARY KEY,
    do_not_disturb  boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE muted_conversations (
    user_id          uuid NOT NULL,
    conversation_id  uuid NOT NULL,
    muted_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, conversation_id)
);

-- One row per (user, conversation) with messages the user may not have seen: later messages
-- accumulate into it until it falls due. Replicas claim due rows with FOR UPDATE SKIP LOCKED.
CREATE TABLE pending_notifications (
    user_id          uuid NOT NULL,
    conversation_id  uuid NOT NULL,
    first_seq        bigint NOT NULL CHECK (first_seq > 0),
    last_seq         bigint NOT NULL CHECK (last_seq >= first_seq),
    message_count    integer NOT NULL CHECK (message_count > 0),
    -- The sender of the latest message.
    sender_id        uuid NOT NULL,
    first_at         timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    -- Webhook attempts that failed so far, and the last failure.
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    PRIMARY KEY (user_id, conversation_id)
);
CREATE INDEX pending_notifications_due ON pending_notifications (due_at);

-- What was decided last per (user, conversation): messages up to `handled_seq` are done with
-- (notified, suppressed or dead-lettered), so a re-delivered event changes nothing; the last
-- notification sent starts the collapse interval.
CREATE TABLE notification_cursors (
    user_id          uuid NOT NULL,
    conversation_id  uuid NOT NULL,
    handled_seq      bigint NOT NULL CHECK (handled_seq >= 0),
    last_sent_at     timestamptz,
    PRIMARY KEY (user_id, conversation_id)
);

-- Notifications the push gateway never accepted after every attempt (or refused outright).
CREATE TABLE notification_dead_letters (
    id               bigserial PRIMARY KEY,
    idempotency_key  uuid NOT NULL,
    user_id          uuid NOT NULL,
    conversation_id  uuid NOT NULL,
    payload          jsonb NOT NULL,
    attempts         integer NOT NULL,
    error            text NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now()
);
