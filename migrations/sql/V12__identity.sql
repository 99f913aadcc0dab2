-- People and their credentials, and the append-only audit log.
--
-- Roles are ordered admin > user > viewer. A user has an optional global role (NULL: only what
-- label grants give) and any number of label grants: role R on every instance whose labels
-- contain key = value. The effective role on an instance is the highest of the global role and
-- the matching grants; an API token caps it at the token's role.
--
-- Every secret is stored hashed: passwords with argon2id (PHC string), API and refresh tokens as
-- lasect_pki::hash_token (SHA-256 hex) of a 256-bit random bearer secret.

CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
    password_hash  text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    role           text CHECK (role IN ('admin', 'user', 'viewer')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text NOT NULL,
    disabled_at    timestamptz,
    -- Consecutive failed logins since the last success, and the lockout they caused.
    failed_logins  integer NOT NULL DEFAULT 0,
    locked_until   timestamptz
);

CREATE TABLE user_label_roles (
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label_key    text NOT NULL,
    label_value  text NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
    PRIMARY KEY (user_id, label_key, label_value)
);

CREATE TABLE api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    token_hash    text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    role          text NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (user_id, name) WHERE revoked_at IS NULL;

-- Refresh tokens rotate: each use marks the row used and inserts its successor in the same
-- family. Presenting a used or revoked token revokes the whole family (it was stolen or
-- replayed).
CREATE TABLE refresh_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    family      uuid NOT NULL,
    user_id     bigint NOT NULL REFERENCES users (id),
    token_hash  text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Append-only: the trigger below refuses UPDATE, DELETE and TRUNCATE, except the DELETE done by
-- lasect_audit_retention(), which marks its own transaction. It keeps the application and
-- mistakes from rewriting history; a superuser can of course still drop the trigger.
CREATE TABLE audit_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time     timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL,
    target   text,
    source   text,
    outcome  text NOT NULL CHECK (outcome IN ('success', 'denied', 'failure')),
    error    text
);
CREATE INDEX audit_log_time ON audit_log (time DESC);
CREATE INDEX audit_log_actor ON audit_log (actor, time DESC);

CREATE FUNCTION lasect_audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('lasect.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION lasect_audit_log_guard();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION lasect_audit_log_guard();

-- Deletes audit rows older than `keep_days` days; returns how many. The only way rows leave.
CREATE FUNCTION lasect_audit_retention(keep_days integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    removed bigint;
BEGIN
    IF keep_days IS NULL OR keep_days < 1 THEN
        RAISE EXCEPTION 'audit retention must be at least 1 day, not %', keep_days;
    END IF;
    PERFORM set_config('lasect.audit_retention', 'on', true);
    DELETE FROM audit_log WHERE time < now() - make_interval(days => keep_days);
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('lasect.audit_retention', 'off', true);
    RETURN removed;
END
$$;
