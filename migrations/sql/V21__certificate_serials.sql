-- Agent identity by certificate serial (ingest/src/revocation.rs has the rules).
--
-- Every certificate an agent may use is a row of agent_certificates: signed by
-- ingest through enrollment or renewal ('enroll', 'renew'), registered by
-- `lasect-api ca init --agent … --store-dsn …` ('ca_init'), or recorded when a
-- certificate that `ca init` made without a store first connects ('first_use').
-- A row with revoked_at set is refused at the handshake, by Renew and on the
-- Control stream; revoke_reason says why: an operator revoked it ('revoked'),
-- a renewal replaced it ('superseded'), or the agent enrolled again
-- ('re-enrolled').

ALTER TABLE agent_certificates
    DROP CONSTRAINT agent_certificates_reason_check,
    ADD CONSTRAINT agent_certificates_reason_check
        CHECK (reason IN ('enroll', 'renew', 'ca_init', 'first_use')),
    ADD COLUMN revoked_at    timestamptz,
    ADD COLUMN revoked_by    text,
    ADD COLUMN revoke_reason text
        CHECK (revoke_reason IN ('revoked', 'superseded', 're-enrolled')),
    ADD CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL));

-- Ingest reads the revoked serials that have not expired every refresh interval.
CREATE INDEX agent_certificates_revoked ON agent_certificates (not_after)
    WHERE revoked_at IS NOT NULL;

-- Before V21 a renewal left the older serial usable until it expired: only the
-- serial the agent was last given (agents.cert_serial) stays valid.
UPDATE agent_certificates c
   SET revoked_at = now(), revoked_by = 'migration V21', revoke_reason = 'superseded'
  FROM agents a
 WHERE a.id = c.agent_id
   AND a.cert_serial IS DISTINCT FROM c.serial
   AND c.not_after > now();

-- Who revoked an enrollment token (listed by GET /api/v1/agents/enrollment-tokens).
ALTER TABLE enrollment_tokens
    ADD COLUMN revoked_by text;
