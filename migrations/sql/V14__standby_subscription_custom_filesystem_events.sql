-- `standby`, `subscription` (+ `subscription_tables`), `custom`,
-- `host_filesystem` and `collector_event`, all keyed by instance.

SELECT lasect_create_metric_table('standby', 'metric_standby', $cols$
    time                 timestamptz NOT NULL,
    instance_id          bigint NOT NULL,
    receiver_status      text,
    sender_host          text,
    sender_port          integer,
    slot_name            text,
    receive_lsn          bigint,
    replay_lsn           bigint,
    replay_delay_seconds double precision,
    replay_lag_bytes     bigint,
    last_msg_age_seconds double precision
$cols$, 'instance_id');

SELECT lasect_create_metric_table('subscription', 'metric_subscription', $cols$
    time              timestamptz NOT NULL,
    instance_id       bigint NOT NULL,
    subname           text NOT NULL,
    pid               integer,
    relid             bigint,
    received_lsn      bigint,
    latest_end_lsn    bigint,
    last_msg_send     timestamptz,
    last_msg_receipt  timestamptz,
    latest_end        timestamptz,
    apply_error_count bigint,
    sync_error_count  bigint
$cols$, 'instance_id, subname');

SELECT lasect_create_metric_table('subscription_tables', 'metric_subscription_tables', $cols$
    time        timestamptz NOT NULL,
    instance_id bigint NOT NULL,
    subname     text NOT NULL,
    schemaname  text NOT NULL,
    relname     text NOT NULL,
    state       text NOT NULL,
    sync_lsn    bigint
$cols$, 'instance_id, subname');

-- User-defined metrics: one row per (result row, value column).
SELECT lasect_create_metric_table('custom', 'metric_custom', $cols$
    time        timestamptz NOT NULL,
    instance_id bigint NOT NULL,
    metric      text NOT NULL,
    datname     text NOT NULL,
    labels      jsonb NOT NULL,
    value_name  text NOT NULL,
    value       double precision
$cols$, 'instance_id, metric');

SELECT lasect_create_metric_table('host_filesystem', 'metric_host_filesystem', $cols$
    time         timestamptz NOT NULL,
    instance_id  bigint NOT NULL,
    mount_point  text NOT NULL,
    device       text,
    fs_type      text,
    roles        text NOT NULL,
    total_bytes  bigint NOT NULL,
    used_bytes   bigint NOT NULL,
    free_bytes   bigint NOT NULL,
    total_inodes bigint NOT NULL,
    used_inodes  bigint NOT NULL,
    free_inodes  bigint NOT NULL
$cols$, 'instance_id');

SELECT lasect_create_metric_table('collector_event', 'metric_collector_event', $cols$
    time        timestamptz NOT NULL,
    instance_id bigint NOT NULL,
    collector   text NOT NULL,
    kind        text NOT NULL,
    message     text NOT NULL,
    sqlstate    text,
    suppressed  bigint NOT NULL
$cols$, 'instance_id, collector');
