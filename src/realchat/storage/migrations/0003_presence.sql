-- Presence as announced: the last transition the presence service published for each user.
-- Redis says who is connected right now; this row says what everyone was told, and its lock
-- is what keeps several presence replicas from announcing the same transition twice.

CREATE TABLE presence (
    user_id     uuid PRIMARY KEY,
    status      text NOT NULL CHECK (status IN ('online', 'offline')),
    -- Bumped by every transition: consumers drop an event older than one they already applied
    -- (online and offline travel on two topics, so they can arrive out of order).
    version     bigint NOT NULL DEFAULT 0 CHECK (version >= 0),
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX presence_online ON presence (user_id) WHERE status = 'online';
