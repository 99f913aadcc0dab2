-- `lock` (pg_locks counted by type, mode and granted) and `lock_waits`
-- (blocking chains: one row per blocked/blocking pair).

SELECT lasect_create_metric_table('lock', 'metric_lock', $cols$
    time        timestamptz NOT NULL,
    instance_id bigint NOT NULL,
    locktype    text NOT NULL,
    mode        text NOT NULL,
    granted     boolean NOT NULL,
    count       bigint NOT NULL
$cols$, 'instance_id');

SELECT lasect_create_metric_table('lock_waits', 'metric_lock_waits', $cols$
    time           timestamptz NOT NULL,
    instance_id    bigint NOT NULL,
    blocked_pid    integer NOT NULL,
    blocking_pid   integer NOT NULL,
    datname        text,
    wait_seconds   double precision,
    blocked_query  text,
    blocking_query text
$cols$, 'instance_id');
