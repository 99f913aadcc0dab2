-- Schema snapshots and the changes between them (schema explorer), and
-- fleet schema migrations (one SQL script run on many instances in turn).

CREATE TABLE schema_snapshots (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id bigint NOT NULL REFERENCES instances (id),
    database    text NOT NULL,
    run_id      bigint REFERENCES runs (id) ON DELETE SET NULL,
    taken_at    timestamptz NOT NULL DEFAULT now(),
    -- SHA-256 (hex) of the canonical document: an unchanged schema is not
    -- stored twice (only taken_at of the latest is moved).
    digest      text NOT NULL,
    -- lasect_schema::Snapshot as JSON.
    snapshot    jsonb NOT NULL
);
CREATE INDEX schema_snapshots_latest ON schema_snapshots (instance_id, database, taken_at DESC);

CREATE TABLE schema_changes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id   bigint NOT NULL REFERENCES instances (id),
    database      text NOT NULL,
    detected_at   timestamptz NOT NULL DEFAULT now(),
    from_snapshot bigint NOT NULL REFERENCES schema_snapshots (id),
    to_snapshot   bigint NOT NULL REFERENCES schema_snapshots (id),
    -- schema, table, column, constraint, index, view, function, type,
    -- enum_value, trigger, sequence, extension
    object_kind   text NOT NULL,
    -- Qualified name, e.g. "public.orders.customer_id".
    object_name   text NOT NULL,
    change        text NOT NULL CHECK (change IN ('added', 'dropped', 'altered')),
    classification text NOT NULL CHECK (classification IN ('breaking', 'non_breaking')),
    -- What changed, e.g. {"from": {"type": "int4"}, "to": {"type": "text"}}.
    detail        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX schema_changes_by_instance ON schema_changes (instance_id, database, detected_at DESC);

CREATE TABLE migrations (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                 text NOT NULL,
    sql                  text NOT NULL,
    sql_sha256           text NOT NULL,
    requested_by         text NOT NULL,
    -- The target selector as given ({"instances": [...]} | {"labels": {...}}
    -- | {"role": ..., "publication": ...}).
    targets              jsonb NOT NULL,
    database             text,
    dry_run              boolean NOT NULL,
    lock_timeout_ms      integer NOT NULL CHECK (lock_timeout_ms > 0),
    statement_timeout_ms integer NOT NULL CHECK (statement_timeout_ms > 0),
    -- Budget of the whole script on one instance.
    timeout_ms           integer NOT NULL CHECK (timeout_ms > 0),
    -- A target whose agent does not pick its run up within this expires
    -- (and halts the migration).
    queue_timeout_s      integer NOT NULL CHECK (queue_timeout_s > 0),
    status               text NOT NULL DEFAULT 'running'
                         CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    finished_at          timestamptz,
    error                text
);
-- Only one migration runs at a time, whoever starts it and from where.
CREATE UNIQUE INDEX migrations_one_running ON migrations ((true)) WHERE status = 'running';

ALTER TABLE runs ADD CONSTRAINT runs_migration_fk
    FOREIGN KEY (migration_id) REFERENCES migrations (id);

CREATE TABLE migration_targets (
    migration_id  bigint NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    position      integer NOT NULL,
    instance_id   bigint NOT NULL REFERENCES instances (id),
    instance_name text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    run_id        bigint REFERENCES runs (id),
    started_at    timestamptz,
    finished_at   timestamptz,
    error         text,
    PRIMARY KEY (migration_id, position)
);

-- Queues the run of the next pending target of a running migration and
-- returns its id; marks the migration succeeded (and returns NULL) when no
-- target is left. The API calls it once after inserting the targets; the
-- trigger below calls it after each success.
CREATE FUNCTION lasect_migration_queue_next(p_migration bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    m        migrations%ROWTYPE;
    t        migration_targets%ROWTYPE;
    agent    text;
    new_run  bigint;
BEGIN
    SELECT * INTO m FROM migrations WHERE id = p_migration FOR UPDATE;
    IF NOT FOUND OR m.status <> 'running' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO t FROM migration_targets
        WHERE migration_id = p_migration AND status = 'pending'
        ORDER BY position LIMIT 1;
    IF NOT FOUND THEN
        UPDATE migrations SET status = 'succeeded', finished_at = now() WHERE id = p_migration;
        RETURN NULL;
    END IF;
    SELECT agent_id INTO agent FROM instances WHERE id = t.instance_id;
    INSERT INTO runs (kind, instance_id, agent_id, params, requested_by, timeout_ms,
                      max_rows, max_bytes, expires_at, migration_id)
    VALUES ('migration', t.instance_id, agent,
            jsonb_strip_nulls(jsonb_build_object(
                'sql', m.sql, 'dry_run', m.dry_run, 'database', m.database,
                'lock_timeout_ms', m.lock_timeout_ms,
                'statement_timeout_ms', m.statement_timeout_ms,
                'migration_id', m.id)),
            m.requested_by, m.timeout_ms, 1, 1048576,
            now() + make_interval(secs => m.queue_timeout_s), m.id)
    RETURNING id INTO new_run;
    UPDATE migration_targets SET status = 'running', run_id = new_run, started_at = now()
        WHERE migration_id = p_migration AND position = t.position;
    RETURN new_run;
END $$;

-- A migration run ended: record it on its target, then go on (success) or
-- halt, leaving the remaining targets untouched and marked skipped.
CREATE FUNCTION lasect_migration_run_ended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target_name text;
BEGIN
    UPDATE migration_targets
        SET status = CASE WHEN NEW.status = 'succeeded' THEN 'succeeded' ELSE 'failed' END,
            error = CASE WHEN NEW.status = 'succeeded' THEN NULL
                         ELSE NEW.status || coalesce(': ' || NEW.error, '') END,
            finished_at = now()
        WHERE migration_id = NEW.migration_id AND run_id = NEW.id
        RETURNING instance_name INTO target_name;
    IF NEW.status = 'succeeded' THEN
        PERFORM lasect_migration_queue_next(NEW.migration_id);
    ELSE
        UPDATE migration_targets SET status = 'skipped'
            WHERE migration_id = NEW.migration_id AND status = 'pending';
        UPDATE migrations
            SET status = 'failed', finished_at = now(),
                error = format('halted at instance %s: %s%s', coalesce(target_name, '?'),
                               NEW.status, coalesce(': ' || NEW.error, ''))
            WHERE id = NEW.migration_id AND status = 'running';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER runs_migration_ended AFTER UPDATE OF status ON runs
    FOR EACH ROW WHEN (NEW.migration_id IS NOT NULL
                       AND OLD.status IS DISTINCT FROM NEW.status
                       AND NEW.status IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'expired'))
    EXECUTE FUNCTION lasect_migration_run_ended();
