-- Agent identity lifecycle: enrollment tokens, issued certificates, revocation, and what each
-- agent reports about itself (host, version, spool backlog) for `lasect agent list`.
--
-- Enrollment tokens are bearer secrets (`lset_…`, see lasect_pki::new_token); only their
-- SHA-256 hex (lasect_pki::hash_token) is stored. A token may be bound to one agent id; it
-- is usable while uses < max_uses, now() < expires_at and revoked_at IS NULL.

ALTER TABLE agents
    ADD COLUMN enrolled_at            timestamptz,
    ADD COLUMN cert_serial            text,
    ADD COLUMN cert_not_after         timestamptz,
    ADD COLUMN disabled_at            timestamptz,
    ADD COLUMN disabled_by            text,
    ADD COLUMN spool_backlog_batches  bigint,
    ADD COLUMN spool_backlog_bytes    bigint;

CREATE TABLE enrollment_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    -- NULL: the enrolling agent chooses its id (it must not be taken by another agent).
    agent_id    text,
    max_uses    integer NOT NULL CHECK (max_uses > 0),
    uses        integer NOT NULL DEFAULT 0 CHECK (uses >= 0),
    expires_at  timestamptz NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK (uses <= max_uses)
);

-- Every certificate ingest signed through enrollment or renewal, for audit and so a renewal
-- can be tied to the certificate it replaces.
CREATE TABLE agent_certificates (
    serial       text PRIMARY KEY,
    agent_id     text NOT NULL REFERENCES agents (id),
    not_before   timestamptz NOT NULL,
    not_after    timestamptz NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    -- 'enroll' or 'renew'.
    reason       text NOT NULL CHECK (reason IN ('enroll', 'renew')),
    token_id     bigint REFERENCES enrollment_tokens (id)
);
CREATE INDEX agent_certificates_agent ON agent_certificates (agent_id, not_after DESC);
