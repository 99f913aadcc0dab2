-- Read-only runs without side effects (docs/CONTROL.md, "Read-only runs"):
-- an API-added instance may name a separate connection for its read-only
-- runs, logging in as an unprivileged role, and may allow them to log in as
-- a privileged one.
ALTER TABLE instances
    -- Encrypted like dsn_ciphertext (lasect_pki::secrets); NULL: the DSN.
    ADD COLUMN run_dsn_ciphertext     bytea,
    -- run_dsn with its password replaced, for display.
    ADD COLUMN run_dsn_redacted       text,
    -- Read-only runs may log in as a superuser or a member of
    -- pg_execute_server_program, pg_read_server_files, pg_write_server_files
    -- or pg_signal_backend (the agent refuses them otherwise).
    ADD COLUMN allow_privileged_runs  boolean NOT NULL DEFAULT false;

-- A changed run connection must reach the serving agent like a changed DSN.
DROP TRIGGER instances_notify_update ON instances;
CREATE TRIGGER instances_notify_update
    AFTER UPDATE OF name, agent_id, state, dsn_ciphertext, run_dsn_ciphertext,
                    allow_privileged_runs ON instances
    FOR EACH ROW WHEN (NEW.source = 'api' OR OLD.source = 'api')
    EXECUTE FUNCTION lasect_instances_notify();
