-- Replication topology (issue 21): what the graph needs beyond the
-- replication families of V7/V12. `replication_identity`: the cluster an
-- instance belongs to (a primary and its physical standbys share
-- system_identifier), its timeline and WAL position. `subscription_source`:
-- where each subscription reads from (host, port, database of its conninfo;
-- the agent never sends the conninfo or its password) and its slot.
-- `publication`: the tables each publication of the agent's database publishes.

SELECT lasect_create_metric_table('replication_identity', 'metric_replication_identity', $cols$
    time              timestamptz NOT NULL,
    instance_id       bigint NOT NULL,
    system_identifier bigint NOT NULL,
    timeline_id       integer NOT NULL,
    in_recovery       boolean NOT NULL,
    wal_lsn           bigint,
    port              integer NOT NULL,
    server_addr       text,
    receiver_application_name text
$cols$, 'instance_id', segment_by => ARRAY['instance_id']);

SELECT lasect_create_metric_table('subscription_source', 'metric_subscription_source', $cols$
    time         timestamptz NOT NULL,
    instance_id  bigint NOT NULL,
    subname      text NOT NULL,
    datname      text NOT NULL,
    enabled      boolean NOT NULL,
    slot_name    text,
    conn_host    text,
    conn_port    integer,
    conn_dbname  text,
    publications text
$cols$, 'instance_id, subname', segment_by => ARRAY['instance_id', 'subname']);

SELECT lasect_create_metric_table('publication', 'metric_publication', $cols$
    time        timestamptz NOT NULL,
    instance_id bigint NOT NULL,
    datname     text NOT NULL,
    pubname     text NOT NULL,
    all_tables  boolean NOT NULL,
    schemaname  text,
    relname     text
$cols$, 'instance_id, pubname', segment_by => ARRAY['instance_id', 'pubname']);

SELECT lasect_grafana_grant();
