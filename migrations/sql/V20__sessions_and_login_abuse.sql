-- Login abuse and sessions (issue 16).
--
-- Failed logins are throttled in the API's memory per (user, source address); the per-user
-- lockout in the store let anyone lock `admin` out, so its columns go.
ALTER TABLE users
    DROP COLUMN failed_logins,
    DROP COLUMN locked_until,
    -- Set when an admin resets the password: until the user sets a new one, its sessions may
    -- only change the password.
    ADD COLUMN must_change_password boolean NOT NULL DEFAULT false,
    ADD COLUMN password_changed_at timestamptz;

-- A token created with another API token: it expires no later than its parent and is revoked
-- with it.
ALTER TABLE api_tokens ADD COLUMN parent_id bigint REFERENCES api_tokens (id);
CREATE INDEX api_tokens_parent ON api_tokens (parent_id) WHERE parent_id IS NOT NULL;

-- Unauthenticated refusals (bad credentials, failed logins), counted per source address and
-- minute instead of one audit row per request, so a scanner cannot grow the audit log.
CREATE TABLE auth_failures (
    source    text NOT NULL,
    minute    timestamptz NOT NULL,
    failures  bigint NOT NULL CHECK (failures > 0),
    PRIMARY KEY (source, minute)
);
CREATE INDEX auth_failures_minute ON auth_failures (minute);
