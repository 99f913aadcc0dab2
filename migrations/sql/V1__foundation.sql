-- Foundation of the central store: agents, instances, delivery bookkeeping,
-- and the first metric families.
--
-- Metric tables are created through lasect_create_metric_table(), which makes
-- a TimescaleDB hypertable when the extension can be used and a native table
-- range-partitioned by day otherwise. The choice is made once, recorded in
-- store_settings, and every later migration goes through the same function,
-- so the two layouts never mix. Queries must work on both: filter on `time`
-- and let the planner prune chunks or partitions.

CREATE TABLE store_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Decide the metric storage from what any role can read: the store's owner is
-- usually an ordinary role, so no superuser-only setting (such as
-- shared_preload_libraries) is consulted. TimescaleDB is used when an
-- administrator created the extension in this database, or when it is
-- installed, preloaded and this role may create it (a superuser, or a role with
-- CREATE on the database, the extension being trusted). Creating it when it is
-- not preloaded would end the session (FATAL), hence the preload test.
-- `SET lasect.metric_storage = 'native'` before migrating forces the native
-- layout (tests use it to cover both paths); 'timescaledb' insists on it.
--
-- This block was edited after V1 shipped (it read shared_preload_libraries,
-- refused to every non-superuser): see the migrations crate's docs for why
-- stores that applied the shipped V1 still migrate.

-- What this role can tell about TimescaleDB here.
CREATE FUNCTION lasect_timescaledb_facts(
    OUT created boolean, OUT available boolean, OUT preloaded boolean, OUT may_create boolean
) LANGUAGE sql STABLE AS $$
    SELECT
        EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
        EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
        -- The loader, loaded only through shared_preload_libraries, defines this
        -- setting readable by everyone; a mere placeholder would be a string.
        EXISTS (SELECT 1 FROM pg_settings
                WHERE name = 'timescaledb.disable_load' AND vartype = 'bool'),
        coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false)
        OR (has_database_privilege(current_database(), 'CREATE')
            AND EXISTS (SELECT 1
                        FROM pg_available_extensions a
                        JOIN pg_available_extension_versions v
                          ON v.name = a.name AND v.version = a.default_version
                        WHERE a.name = 'timescaledb' AND v.trusted))
$$;

-- The layout for those facts ('timescaledb' or 'native'), or an error saying
-- what is missing when `forced` asks for TimescaleDB.
CREATE FUNCTION lasect_choose_metric_storage(
    forced text, created boolean, available boolean, preloaded boolean, may_create boolean
) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    missing text := CASE
        WHEN created THEN NULL
        WHEN NOT available THEN 'the timescaledb extension is not installed on this server'
        WHEN NOT preloaded THEN 'timescaledb is not in shared_preload_libraries'
        WHEN NOT may_create THEN 'this role may not create the extension: '
             'an administrator must run CREATE EXTENSION timescaledb in this database'
    END;
BEGIN
    IF forced IS NOT NULL AND forced NOT IN ('native', 'timescaledb') THEN
        RAISE EXCEPTION 'lasect.metric_storage must be native or timescaledb, not %', forced;
    END IF;
    IF forced = 'native' THEN
        RETURN 'native';
    END IF;
    IF missing IS NULL THEN
        RETURN 'timescaledb';
    END IF;
    IF forced = 'timescaledb' THEN
        RAISE EXCEPTION 'lasect.metric_storage = timescaledb, but %', missing;
    END IF;
    IF available THEN
        RAISE NOTICE 'metric storage: native partitions, because %', missing;
    END IF;
    RETURN 'native';
END
$$;

DO $$
DECLARE
    f record;
    storage text;
BEGIN
    SELECT * INTO f FROM lasect_timescaledb_facts();
    storage := lasect_choose_metric_storage(
        nullif(current_setting('lasect.metric_storage', true), ''),
        f.created, f.available, f.preloaded, f.may_create);
    IF storage = 'timescaledb' AND NOT f.created THEN
        CREATE EXTENSION timescaledb;
    END IF;
    INSERT INTO store_settings VALUES ('metric_storage', storage);
END
$$;

-- Registry of metric families: the name the API and CLI use, the table, and
-- how long its rows are kept.
CREATE TABLE metric_families (
    name       text PRIMARY KEY,
    table_name text NOT NULL UNIQUE,
    retention  interval NOT NULL DEFAULT interval '14 days'
);

-- Creates a metric table for a family. `columns` must include
-- `time timestamptz NOT NULL`; `index_columns` is the leading key of the
-- lookup index (time DESC is appended).
CREATE FUNCTION lasect_create_metric_table(
    family text, table_name text, columns text, index_columns text,
    retention interval DEFAULT interval '14 days'
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    storage text := (SELECT value FROM store_settings WHERE key = 'metric_storage');
BEGIN
    IF storage = 'timescaledb' THEN
        EXECUTE format('CREATE TABLE %I (%s)', table_name, columns);
        PERFORM create_hypertable(table_name::regclass, 'time',
                                  chunk_time_interval => interval '1 day');
        PERFORM add_retention_policy(table_name::regclass, retention);
    ELSE
        EXECUTE format('CREATE TABLE %I (%s) PARTITION BY RANGE (time)', table_name, columns);
    END IF;
    EXECUTE format('CREATE INDEX %I ON %I (%s, time DESC)',
                   table_name || '_lookup', table_name, index_columns);
    INSERT INTO metric_families (name, table_name, retention)
    VALUES (family, table_name, retention);
END
$$;

-- Native layout only: makes sure a daily partition exists for every metric
-- table and every UTC day in [from_day, to_day]. Safe to call concurrently.
-- Returns the number of partitions created. A no-op on TimescaleDB.
CREATE FUNCTION lasect_ensure_partitions(from_day date, to_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    fam record;
    d date;
    part text;
    created integer := 0;
BEGIN
    IF (SELECT value FROM store_settings WHERE key = 'metric_storage') <> 'native' THEN
        RETURN 0;
    END IF;
    IF to_day - from_day > 400 THEN
        RAISE EXCEPTION 'refusing to create partitions for % days', to_day - from_day;
    END IF;
    -- Serialise creators: CREATE TABLE IF NOT EXISTS still races on the catalog.
    PERFORM pg_advisory_xact_lock(hashtext('lasect_ensure_partitions'));
    FOR fam IN SELECT f.table_name FROM metric_families f ORDER BY 1 LOOP
        d := from_day;
        WHILE d <= to_day LOOP
            part := fam.table_name || '_p' || to_char(d, 'YYYYMMDD');
            IF to_regclass(quote_ident(part)) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    part, fam.table_name,
                    d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
                created := created + 1;
            END IF;
            d := d + 1;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;

-- Native layout only: drops daily partitions that lie wholly before
-- now() - retention of their family. Returns the number dropped.
CREATE FUNCTION lasect_drop_expired_partitions()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    p record;
    dropped integer := 0;
BEGIN
    IF (SELECT value FROM store_settings WHERE key = 'metric_storage') <> 'native' THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('lasect_ensure_partitions'));
    FOR p IN
        SELECT c.relname AS part
        FROM metric_families f
        JOIN pg_inherits i ON i.inhparent = to_regclass(quote_ident(f.table_name))
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE c.relname ~ '_p[0-9]{8}$'
          AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1
              <= (now() AT TIME ZONE 'UTC' - f.retention)::date
    LOOP
        EXECUTE format('DROP TABLE %I', p.part);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

CREATE TABLE agents (
    -- Common Name of the agent's client certificate.
    id         text PRIMARY KEY,
    hostname   text,
    version    text,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE instances (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               text NOT NULL,
    agent_id           text NOT NULL REFERENCES agents (id),
    server_version_num integer,
    version            text,
    in_recovery        boolean,
    labels             jsonb NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_seen          timestamptz,
    UNIQUE (agent_id, name)
);

-- One row per batch ever committed: the (agent, seq) written in the same
-- transaction as the batch's rows makes a resent batch a no-op.
CREATE TABLE ingest_batches (
    agent_id    text NOT NULL,
    seq         bigint NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    samples     integer NOT NULL,
    PRIMARY KEY (agent_id, seq)
);

SELECT lasect_create_metric_table('database', 'metric_database', $cols$
    time          timestamptz NOT NULL,
    instance_id   bigint NOT NULL,
    datid         bigint NOT NULL,
    datname       text NOT NULL,
    numbackends   integer,
    xact_commit   bigint,
    xact_rollback bigint,
    blks_read     bigint,
    blks_hit      bigint,
    tup_returned  bigint,
    tup_fetched   bigint,
    tup_inserted  bigint,
    tup_updated   bigint,
    tup_deleted   bigint,
    conflicts     bigint,
    temp_files    bigint,
    temp_bytes    bigint,
    deadlocks     bigint,
    size_bytes    bigint,
    stats_reset   timestamptz
$cols$, 'instance_id');

SELECT lasect_create_metric_table('host_cpu', 'metric_host_cpu', $cols$
    time          timestamptz NOT NULL,
    agent_id      text NOT NULL,
    cpu_count     integer NOT NULL,
    usage_percent double precision NOT NULL,
    load1         double precision NOT NULL,
    load5         double precision NOT NULL,
    load15        double precision NOT NULL
$cols$, 'agent_id');

SELECT lasect_create_metric_table('host_memory', 'metric_host_memory', $cols$
    time             timestamptz NOT NULL,
    agent_id         text NOT NULL,
    total_bytes      bigint NOT NULL,
    used_bytes       bigint NOT NULL,
    available_bytes  bigint NOT NULL,
    free_bytes       bigint NOT NULL,
    swap_total_bytes bigint NOT NULL,
    swap_used_bytes  bigint NOT NULL
$cols$, 'agent_id');
