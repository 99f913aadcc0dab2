-- Metric families of issue 3. Each goes through lasect_create_metric_table()
-- (hypertable or native daily partitions, registered in metric_families).

-- `statement`: per-interval deltas of pg_stat_statements. since_reset marks
-- a row whose values count from a reset inside the interval (a lower bound).
SELECT lasect_create_metric_table('statement', 'metric_statement', $cols$
    time                     timestamptz NOT NULL,
    instance_id              bigint NOT NULL,
    queryid                  bigint NOT NULL,
    dbid                     bigint NOT NULL,
    userid                   bigint NOT NULL,
    toplevel                 boolean NOT NULL,
    since_reset              boolean NOT NULL,
    calls                    bigint,
    rows                     bigint,
    total_exec_time_ms       double precision,
    plans                    bigint,
    total_plan_time_ms       double precision,
    shared_blks_hit          bigint,
    shared_blks_read         bigint,
    shared_blks_dirtied      bigint,
    shared_blks_written      bigint,
    local_blks_hit           bigint,
    local_blks_read          bigint,
    temp_blks_read           bigint,
    temp_blks_written        bigint,
    shared_blk_read_time_ms  double precision,
    shared_blk_write_time_ms double precision,
    wal_records              bigint,
    wal_bytes                bigint
$cols$, 'instance_id, queryid');

-- The text of each statement, stored once per (instance, queryid): the agent
-- sends a text only the first time it sees a queryid, so metric rows stay
-- small and the monitored server's query-text file is rarely read. Not a
-- metric table: it is kept as long as its instance.
CREATE TABLE statement_texts (
    instance_id bigint NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    queryid     bigint NOT NULL,
    query       text NOT NULL,
    first_seen  timestamptz NOT NULL,
    PRIMARY KEY (instance_id, queryid)
);
