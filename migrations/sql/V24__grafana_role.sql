-- The read-only group role Grafana's datasource logs in through
-- (dashboards/README.md): SELECT on the metric tables and on the few other
-- tables the dashboards read (instances, agents, statement texts, batches,
-- alerts), column by column where a table also holds something Grafana must
-- not see. Never the tables of secrets or people:
-- users, api_tokens, refresh_tokens, enrollment_tokens, agent_certificates,
-- audit_log, auth_failures, runs and their inputs and results (parameters and
-- result rows of database work), instances' DSNs and metadata.
--
-- A role belongs to the cluster, not to this database, and the store's owner
-- is usually an ordinary role: the group is created here only when this role
-- may create roles. Otherwise an administrator runs
--     CREATE ROLE lasect_grafana NOLOGIN;
-- and then, as the store's owner, SELECT lasect_grafana_grant();
--
-- lasect_create_metric_table() (redefined below, as in V22 plus the grant)
-- grants every family created from now on; the dashboards' end-to-end test
-- fails while a family's table is not readable by the role.

CREATE FUNCTION lasect_grafana_grant() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    fam record;
    granted integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lasect_grafana') THEN
        RAISE NOTICE 'role lasect_grafana does not exist: nothing granted';
        RETURN 0;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO lasect_grafana', current_schema());
    FOR fam IN SELECT f.table_name FROM metric_families f ORDER BY 1 LOOP
        EXECUTE format('GRANT SELECT ON %I TO lasect_grafana', fam.table_name);
        granted := granted + 1;
    END LOOP;
    GRANT SELECT ON metric_families, store_settings, statement_texts, ingest_batches
        TO lasect_grafana;
    -- Not dsn_ciphertext, run_dsn_ciphertext, dsn_redacted or metadata.
    GRANT SELECT (id, name, agent_id, server_version_num, version, in_recovery, labels,
                  created_at, last_seen, source, state, health_at)
        ON instances TO lasect_grafana;
    -- Not the certificate serial or who disabled an agent.
    GRANT SELECT (id, hostname, version, first_seen, last_seen, enrolled_at, cert_not_after,
                  disabled_at, spool_backlog_batches, spool_backlog_bytes,
                  control_connected_at)
        ON agents TO lasect_grafana;
    -- Alerts (V23), without the names of the people who changed, acknowledged or silenced.
    GRANT SELECT ON alert_events TO lasect_grafana;
    GRANT SELECT (id, name, severity, enabled, source, scope, condition, for_secs, hysteresis,
                  labels, annotations, created_at, updated_at, last_evaluated_at, last_error)
        ON alert_rules TO lasect_grafana;
    GRANT SELECT (id, rule_id, key, instance_id, agent_id, key_labels, state, since, last_value,
                  last_evaluated, labels, annotations, acknowledged_at)
        ON alert_instances TO lasect_grafana;
    GRANT SELECT (id, matchers, starts_at, ends_at, comment, created_at, removed_at)
        ON alert_silences TO lasect_grafana;
    RETURN granted;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lasect_grafana') THEN
        IF NOT coalesce((SELECT rolsuper OR rolcreaterole FROM pg_roles
                         WHERE rolname = current_user), false) THEN
            RAISE NOTICE 'role lasect_grafana not created: % may not create roles '
                         '(an administrator may create it, then SELECT lasect_grafana_grant())',
                         current_user;
            RETURN;
        END IF;
        BEGIN
            CREATE ROLE lasect_grafana NOLOGIN;
        EXCEPTION
            -- Another store of this cluster migrating at the same moment made it.
            WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    PERFORM lasect_grafana_grant();
END
$$;

CREATE OR REPLACE FUNCTION lasect_create_metric_table(
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
    PERFORM lasect_grafana_grant();
END
$$;
