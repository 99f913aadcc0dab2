-- Logical replication streams (issue 21, R2/R3, docs/REPLICATION.md "Streams"): the run kinds
-- that validate, create and drop them, the streams and their steps, and the backfill family.

-- The kinds are added to whatever the CHECK lists when this runs (as V30 does), so migrations
-- adding other kinds before or after this one keep theirs.
DO $$
DECLARE
    kinds text[];
BEGIN
    SELECT array_agg(DISTINCT m[1] ORDER BY m[1]) INTO kinds
      FROM pg_constraint c,
           regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') AS m
     WHERE c.conrelid = 'runs'::regclass AND c.conname = 'runs_kind_check';
    kinds := kinds || ARRAY['replication_validate', 'replication_publish',
                            'replication_subscribe', 'replication_drop'];
    ALTER TABLE runs DROP CONSTRAINT runs_kind_check;
    EXECUTE format('ALTER TABLE runs ADD CONSTRAINT runs_kind_check CHECK (kind IN (%s))',
                   (SELECT string_agg(DISTINCT quote_literal(k), ', ') FROM unnest(kinds) k));
END
$$;

-- One stream: a publication and a slot on the publisher, a subscription on the subscriber.
-- The conninfo the subscriber uses is stored without its password; the password is an
-- AES-256-GCM ciphertext bound to the stream and the subscriber (lasect_pki::secrets), which
-- only ingest decrypts, for the subscriber's agent.
CREATE TABLE replication_streams (
    id                     bigserial PRIMARY KEY,
    publisher_instance_id  bigint NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    subscriber_instance_id bigint NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    publisher_database     text,
    subscriber_database    text,
    publication            text NOT NULL,
    slot_name              text NOT NULL,
    subscription           text NOT NULL,
    -- [{"schema": .., "table": ..}] as asked; with schema_name: every table of that schema.
    tables                 jsonb NOT NULL DEFAULT '[]',
    schema_name            text,
    copy_schema            boolean NOT NULL DEFAULT false,
    -- What --copy-schema created on the subscriber (dropped again by a rollback or remove).
    created_tables         jsonb NOT NULL DEFAULT '[]',
    conninfo               text NOT NULL,
    password_ciphertext    bytea,
    status                 text NOT NULL CHECK (status IN (
        'validating', 'invalid', 'validated', 'creating', 'syncing', 'rolling_back',
        'failed', 'rollback_failed', 'removing', 'removed', 'remove_failed')),
    dry_run                boolean NOT NULL DEFAULT false,
    -- [{"side": .., "check": .., "message": ..}]: every problem validation found.
    problems               jsonb NOT NULL DEFAULT '[]',
    failed_step            text,
    error                  text,
    suboid                 bigint,
    requested_by           text NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK (publisher_instance_id <> subscriber_instance_id)
);

-- Each run of a stream's operations, in order.
CREATE TABLE replication_stream_steps (
    stream_id   bigint NOT NULL REFERENCES replication_streams (id) ON DELETE CASCADE,
    n           integer NOT NULL,
    step        text NOT NULL,
    instance_id bigint NOT NULL,
    run_id      bigint REFERENCES runs (id) ON DELETE SET NULL,
    status      text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    error       text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (stream_id, n)
);

-- Backfill: the COPY of each table a subscription's table-sync workers are copying
-- (pg_stat_progress_copy joined with pg_stat_subscription, PostgreSQL 14+).
SELECT lasect_create_metric_table('subscription_copy', 'metric_subscription_copy', $cols$
    time             timestamptz NOT NULL,
    instance_id      bigint NOT NULL,
    subname          text NOT NULL,
    schemaname       text NOT NULL,
    relname          text NOT NULL,
    pid              integer NOT NULL,
    bytes_processed  bigint NOT NULL,
    tuples_processed bigint NOT NULL
$cols$, 'instance_id, subname', segment_by => ARRAY['instance_id', 'subname', 'schemaname', 'relname']);

SELECT lasect_grafana_grant();
