-- `wal`, `bgwriter`, `archiver` (one row per sample of an instance) and
-- `settings` (every pg_settings row) with `setting_changes` (one row per
-- change the agent saw between two settings samples).

SELECT lasect_create_metric_table('wal', 'metric_wal', $cols$
    time              timestamptz NOT NULL,
    instance_id       bigint NOT NULL,
    current_lsn       bigint,
    wal_records       bigint,
    wal_fpi           bigint,
    wal_bytes         bigint,
    wal_buffers_full  bigint,
    wal_write         bigint,
    wal_sync          bigint,
    wal_write_time_ms double precision,
    wal_sync_time_ms  double precision,
    stats_reset       timestamptz
$cols$, 'instance_id');

SELECT lasect_create_metric_table('bgwriter', 'metric_bgwriter', $cols$
    time                     timestamptz NOT NULL,
    instance_id              bigint NOT NULL,
    checkpoints_timed        bigint,
    checkpoints_req          bigint,
    checkpoint_write_time_ms double precision,
    checkpoint_sync_time_ms  double precision,
    buffers_checkpoint       bigint,
    buffers_clean            bigint,
    maxwritten_clean         bigint,
    buffers_backend          bigint,
    buffers_backend_fsync    bigint,
    buffers_alloc            bigint,
    stats_reset              timestamptz
$cols$, 'instance_id');

SELECT lasect_create_metric_table('archiver', 'metric_archiver', $cols$
    time                      timestamptz NOT NULL,
    instance_id               bigint NOT NULL,
    archived_count            bigint,
    last_archived_wal         text,
    last_archived_time        timestamptz,
    failed_count              bigint,
    last_failed_wal           text,
    last_failed_time          timestamptz,
    last_archived_age_seconds double precision,
    stats_reset               timestamptz
$cols$, 'instance_id');

SELECT lasect_create_metric_table('settings', 'metric_settings', $cols$
    time            timestamptz NOT NULL,
    instance_id     bigint NOT NULL,
    name            text NOT NULL,
    setting         text NOT NULL,
    unit            text,
    source          text NOT NULL,
    pending_restart boolean NOT NULL
$cols$, 'instance_id, name');

SELECT lasect_create_metric_table('setting_changes', 'metric_setting_changes', $cols$
    time            timestamptz NOT NULL,
    instance_id     bigint NOT NULL,
    name            text NOT NULL,
    old_setting     text,
    new_setting     text NOT NULL,
    pending_restart boolean NOT NULL
$cols$, 'instance_id', interval '90 days');
