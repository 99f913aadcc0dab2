-- `replication` (per WAL sender on a primary) and `replication_slot`.

SELECT lasect_create_metric_table('replication', 'metric_replication', $cols$
    time               timestamptz NOT NULL,
    instance_id        bigint NOT NULL,
    pid                integer NOT NULL,
    application_name   text,
    client_addr        text,
    state              text,
    sync_state         text,
    sent_lag_bytes     bigint,
    write_lag_bytes    bigint,
    flush_lag_bytes    bigint,
    replay_lag_bytes   bigint,
    write_lag_seconds  double precision,
    flush_lag_seconds  double precision,
    replay_lag_seconds double precision
$cols$, 'instance_id');

SELECT lasect_create_metric_table('replication_slot', 'metric_replication_slot', $cols$
    time           timestamptz NOT NULL,
    instance_id    bigint NOT NULL,
    slot_name      text NOT NULL,
    slot_type      text NOT NULL,
    plugin         text,
    datname        text,
    active         boolean NOT NULL,
    temporary      boolean NOT NULL,
    retained_bytes bigint,
    wal_status     text,
    safe_wal_size  bigint,
    conflicting    boolean
$cols$, 'instance_id, slot_name');
