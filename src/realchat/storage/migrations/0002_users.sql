-- Accounts of the auth service. Usernames are stored lower-case, so the UNIQUE constraint is also
-- the case-insensitive uniqueness rule; the CHECK repeats the contract's rule as a backstop.

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    username       text NOT NULL CHECK (username ~ '^[a-z0-9_.-]{3,32}$'),
    -- argon2id in PHC string format (parameters and salt included).
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_username_key UNIQUE (username)
);
