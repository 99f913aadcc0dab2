-- Native compression of the TimescaleDB layout (TimescaleDB 2.x SQL API).
--
-- Every family gets a series key and an age: on TimescaleDB its chunks older
-- than the age are compressed column-wise, one segment per series key value,
-- rows ordered by time. On the native layout these columns are kept (so a
-- store can be reasoned about the same way) and nothing else happens.

-- segment_by: the instance or agent id the rows are keyed by, then the
-- columns that tell a family's series apart (the keys of the API's series).
-- compress_after: chunks whose data is older than this are compressed.
ALTER TABLE metric_families
    ADD COLUMN segment_by text[],
    ADD COLUMN compress_after interval NOT NULL DEFAULT interval '2 days'
        CHECK (compress_after > interval '0');

UPDATE metric_families f
SET segment_by = ARRAY[k.id_column] || k.keys
FROM (
    SELECT f2.name,
           -- The first column of the family's lookup index is its id column.
           (SELECT a.attname::text
            FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indexrelid = to_regclass(quote_ident(f2.table_name || '_lookup'))) AS id_column,
           coalesce(v.keys, '{}') AS keys
    FROM metric_families f2
    LEFT JOIN (VALUES
        ('database',            ARRAY['datname']),
        ('statement',           ARRAY['queryid', 'dbid', 'userid', 'toplevel']),
        ('table',               ARRAY['datname', 'schemaname', 'relname']),
        ('index',               ARRAY['datname', 'schemaname', 'relname', 'indexrelname']),
        ('settings',            ARRAY['name']),
        ('setting_changes',     ARRAY['name']),
        ('activity_sessions',   ARRAY['datname', 'usename', 'application_name', 'state']),
        ('lock',                ARRAY['locktype', 'mode', 'granted']),
        ('lock_waits',          ARRAY['datname']),
        ('replication',         ARRAY['application_name', 'client_addr']),
        ('replication_slot',    ARRAY['slot_name']),
        ('progress',            ARRAY['command', 'pid']),
        ('wait',                ARRAY['wait_event_type', 'wait_event', 'queryid']),
        ('host_network',        ARRAY['interface']),
        ('host_disk_io',        ARRAY['device']),
        ('subscription',        ARRAY['subname', 'relid']),
        ('subscription_tables', ARRAY['subname', 'schemaname', 'relname', 'state']),
        ('custom',              ARRAY['metric', 'datname', 'labels', 'value_name']),
        ('host_filesystem',     ARRAY['mount_point']),
        ('collector_event',     ARRAY['collector', 'kind']),
        ('log',                 ARRAY['severity']),
        ('log_plans',           ARRAY['query_id'])
    ) AS v (name, keys) ON v.name = f2.name
) k
WHERE k.name = f.name;

ALTER TABLE metric_families ALTER COLUMN segment_by SET NOT NULL;

-- The ALTER TABLE that enables compression of a family's table: segment by
-- its series key, order by time (newest first, as queries read it).
CREATE FUNCTION lasect_compression_sql(family text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format(
        'ALTER TABLE %I SET (timescaledb.compress, '
        'timescaledb.compress_segmentby = %L, '
        'timescaledb.compress_orderby = %L)',
        f.table_name,
        (SELECT string_agg(quote_ident(c), ', ' ORDER BY n)
         FROM unnest(f.segment_by) WITH ORDINALITY AS s (c, n)),
        'time DESC')
    FROM metric_families f
    WHERE f.name = family
$$;

-- TimescaleDB layout: enables compression on every metric table that lacks
-- it and makes each table's compression policy match its family's
-- compress_after. Idempotent; returns how many tables it changed. A no-op
-- (0) on the native layout.
CREATE FUNCTION lasect_apply_compression() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    fam record;
    policy_after interval;
    has_policy boolean;
    changed boolean;
    changes integer := 0;
BEGIN
    IF (SELECT value FROM store_settings WHERE key = 'metric_storage') <> 'timescaledb' THEN
        RETURN 0;
    END IF;
    FOR fam IN SELECT f.name, f.table_name, f.compress_after FROM metric_families f ORDER BY 1 LOOP
        changed := false;
        IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
                       WHERE h.hypertable_name = fam.table_name
                         AND h.hypertable_schema = current_schema()
                         AND h.compression_enabled) THEN
            EXECUTE lasect_compression_sql(fam.name);
            changed := true;
        END IF;
        SELECT true, (j.config ->> 'compress_after')::interval INTO has_policy, policy_after
        FROM timescaledb_information.jobs j
        WHERE j.proc_name = 'policy_compression'
          AND j.hypertable_name = fam.table_name
          AND j.hypertable_schema = current_schema();
        IF has_policy AND policy_after IS DISTINCT FROM fam.compress_after THEN
            PERFORM remove_compression_policy(fam.table_name::regclass, if_exists => true);
            has_policy := false;
        END IF;
        IF has_policy IS NOT TRUE THEN
            PERFORM add_compression_policy(fam.table_name::regclass,
                                           compress_after => fam.compress_after);
            changed := true;
        END IF;
        IF changed THEN
            changes := changes + 1;
        END IF;
    END LOOP;
    RETURN changes;
END
$$;

-- Families created from now on get a series key (default: the columns of
-- their lookup index) and, on TimescaleDB, compression at creation.
DROP FUNCTION lasect_create_metric_table(text, text, text, text, interval);

CREATE FUNCTION lasect_create_metric_table(
    family text, table_name text, columns text, index_columns text,
    retention interval DEFAULT interval '14 days',
    segment_by text[] DEFAULT NULL
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
    INSERT INTO metric_families (name, table_name, retention, segment_by)
    VALUES (family, table_name, retention,
            coalesce(segment_by,
                     (SELECT array_agg(btrim(c) ORDER BY n)
                      FROM unnest(string_to_array(index_columns, ',')) WITH ORDINALITY AS s (c, n))));
    PERFORM lasect_apply_compression();
END
$$;

SELECT lasect_apply_compression();
