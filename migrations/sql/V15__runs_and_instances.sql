-- Runs: work executed by agents on the API's behalf (docs/CONTROL.md), and
-- instances added through the API.
--
-- The store is the bus: the API inserts a run (status queued); an ingest
-- process that holds the target agent's Control stream claims it with
-- FOR UPDATE SKIP LOCKED (so several ingests never hand one run out twice),
-- and writes its progress, result pages and final status. Triggers send the
-- notifications, so every writer gets them without remembering to.

ALTER TABLE instances
    -- 'agent': from an agent's config file (created on its first push);
    -- 'api': added through the API, its DSN kept here encrypted.
    ADD COLUMN source         text NOT NULL DEFAULT 'agent' CHECK (source IN ('agent', 'api')),
    -- 'validating': added, the agent's connection check not yet passed;
    -- 'removed': hidden from lists and no longer assigned (data is kept).
    ADD COLUMN state          text NOT NULL DEFAULT 'active'
                              CHECK (state IN ('validating', 'active', 'removed')),
    -- AES-256-GCM, see lasect_pki::secrets; NULL for config-file instances.
    ADD COLUMN dsn_ciphertext bytea,
    -- The DSN with its password replaced, for display.
    ADD COLUMN dsn_redacted   text,
    -- Last health report of the serving agent: {"up", "error", ...}.
    ADD COLUMN health         jsonb,
    ADD COLUMN health_at      timestamptz,
    -- Last instance_metadata result (version, roles, extensions, sizes, ...).
    ADD COLUMN metadata       jsonb,
    ADD COLUMN metadata_at    timestamptz;

CREATE TABLE runs (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                text NOT NULL CHECK (kind IN (
                            'sql', 'explain', 'instance_check', 'instance_metadata',
                            'schema_snapshot', 'table_data', 'export_csv', 'import_csv',
                            'dump_sql', 'extension_list', 'extension_action', 'migration')),
    instance_id         bigint NOT NULL REFERENCES instances (id),
    agent_id            text NOT NULL REFERENCES agents (id),
    -- The kind's parameters (docs/CONTROL.md); never a secret.
    params              jsonb NOT NULL DEFAULT '{}',
    -- "user:<name>", "token:<name>" or "system".
    requested_by        text NOT NULL,
    status              text NOT NULL DEFAULT 'queued' CHECK (status IN (
                            'queued', 'dispatched', 'running', 'succeeded', 'failed',
                            'timed_out', 'cancelled', 'expired')),
    timeout_ms          integer NOT NULL CHECK (timeout_ms > 0),
    max_rows            bigint NOT NULL CHECK (max_rows > 0),
    max_bytes           bigint NOT NULL CHECK (max_bytes > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    -- A run still queued then (its agent offline) is expired.
    expires_at          timestamptz NOT NULL,
    dispatched_at       timestamptz,
    -- The ingest process that handed the run out.
    dispatched_by       text,
    started_at          timestamptz,
    finished_at         timestamptz,
    backend_pid         integer,
    cancel_requested_at timestamptz,
    rows                bigint,
    bytes               bigint,
    truncated           boolean NOT NULL DEFAULT false,
    pages               integer NOT NULL DEFAULT 0,
    error               text,
    error_detail        jsonb,
    summary             jsonb,
    -- Result pages are deleted after this (maintenance).
    result_expires_at   timestamptz,
    -- Set for the runs of a fleet migration (V16).
    migration_id        bigint
);

CREATE INDEX runs_queued ON runs (agent_id, id) WHERE status = 'queued';
CREATE INDEX runs_in_flight ON runs (agent_id) WHERE status IN ('dispatched', 'running');
CREATE INDEX runs_by_instance ON runs (instance_id, id DESC);
CREATE INDEX runs_by_time ON runs (created_at DESC);

-- A run's input (the CSV of import_csv), zstd-compressed.
CREATE TABLE run_inputs (
    run_id     bigint PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    bytes      bigint NOT NULL,
    data       bytea NOT NULL
);

-- A run's result pages in order, each zstd-compressed: a JSON array of
-- rows for row results, raw bytes (CSV, SQL, JSON document) otherwise.
CREATE TABLE run_results (
    run_id     bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    page       integer NOT NULL CHECK (page >= 0),
    rows       integer NOT NULL,
    bytes      integer NOT NULL,
    data       bytea NOT NULL,
    PRIMARY KEY (run_id, page)
);

-- New run: wake the ingest that holds the agent (payload: agent id).
CREATE FUNCTION lasect_runs_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lasect_runs', NEW.agent_id);
    RETURN NULL;
END $$;
CREATE TRIGGER runs_notify_queued AFTER INSERT ON runs
    FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION lasect_runs_notify_queued();

-- Cancel asked: payload "<run id> <agent id>".
CREATE FUNCTION lasect_runs_notify_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lasect_run_cancel', NEW.id::text || ' ' || NEW.agent_id);
    RETURN NULL;
END $$;
CREATE TRIGGER runs_notify_cancel AFTER UPDATE OF cancel_requested_at ON runs
    FOR EACH ROW WHEN (OLD.cancel_requested_at IS NULL AND NEW.cancel_requested_at IS NOT NULL)
    EXECUTE FUNCTION lasect_runs_notify_cancel();

-- Status changed: payload "<run id> <status>" (API waiters).
CREATE FUNCTION lasect_runs_notify_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lasect_run_status', NEW.id::text || ' ' || NEW.status);
    RETURN NULL;
END $$;
CREATE TRIGGER runs_notify_status AFTER UPDATE OF status ON runs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION lasect_runs_notify_status();

-- API instances changed: the serving agent's assignments must be resent
-- (payload: agent id). Pushes update last_seen and versions only, which
-- must not wake anyone.
CREATE FUNCTION lasect_instances_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('lasect_instances', OLD.agent_id);
        RETURN NULL;
    END IF;
    PERFORM pg_notify('lasect_instances', NEW.agent_id);
    IF TG_OP = 'UPDATE' AND OLD.agent_id IS DISTINCT FROM NEW.agent_id THEN
        PERFORM pg_notify('lasect_instances', OLD.agent_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER instances_notify_insert AFTER INSERT ON instances
    FOR EACH ROW WHEN (NEW.source = 'api') EXECUTE FUNCTION lasect_instances_notify();
CREATE TRIGGER instances_notify_update
    AFTER UPDATE OF name, agent_id, state, dsn_ciphertext ON instances
    FOR EACH ROW WHEN (NEW.source = 'api' OR OLD.source = 'api')
    EXECUTE FUNCTION lasect_instances_notify();
CREATE TRIGGER instances_notify_delete AFTER DELETE ON instances
    FOR EACH ROW WHEN (OLD.source = 'api') EXECUTE FUNCTION lasect_instances_notify();
