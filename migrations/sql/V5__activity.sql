-- `activity` (one summary row per sample) and `activity_sessions` (session
-- counts per database, user, application and state).

SELECT lasect_create_metric_table('activity', 'metric_activity', $cols$
    time                            timestamptz NOT NULL,
    instance_id                     bigint NOT NULL,
    max_connections                 bigint,
    total_sessions                  bigint,
    connection_use_percent          double precision,
    waiting_sessions                bigint,
    oldest_xact_age_seconds         double precision,
    oldest_query_age_seconds        double precision,
    oldest_idle_in_xact_age_seconds double precision
$cols$, 'instance_id');

SELECT lasect_create_metric_table('activity_sessions', 'metric_activity_sessions', $cols$
    time             timestamptz NOT NULL,
    instance_id      bigint NOT NULL,
    datname          text,
    usename          text,
    application_name text,
    state            text,
    sessions         bigint NOT NULL,
    waiting          bigint NOT NULL
$cols$, 'instance_id');
