-- `wait`: per window, how many active sessions were seen waiting on each
-- wait event (and queryid), summed over the window's 1-second samples.

SELECT lasect_create_metric_table('wait', 'metric_wait', $cols$
    time            timestamptz NOT NULL,
    instance_id     bigint NOT NULL,
    wait_event_type text NOT NULL,
    wait_event      text NOT NULL,
    queryid         bigint,
    count           bigint NOT NULL,
    samples         integer NOT NULL,
    avg_sessions    double precision NOT NULL
$cols$, 'instance_id');
