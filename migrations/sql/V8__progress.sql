-- `progress`: running vacuum, analyze, create index, cluster, basebackup
-- and copy, one row per command and sample.

SELECT lasect_create_metric_table('progress', 'metric_progress', $cols$
    time         timestamptz NOT NULL,
    instance_id  bigint NOT NULL,
    command      text NOT NULL,
    pid          integer NOT NULL,
    datname      text,
    relid        bigint,
    phase        text,
    done         bigint,
    total        bigint,
    percent_done double precision
$cols$, 'instance_id');
