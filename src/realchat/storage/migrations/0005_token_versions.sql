-- Revocable sessions: every access token carries the version of its user's tokens at issue
-- (`ver`); logout and a password change bump it, and every older token is refused from then on.

ALTER TABLE users ADD COLUMN token_version bigint NOT NULL DEFAULT 0 CHECK (token_version >= 0);
