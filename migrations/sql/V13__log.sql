-- `log`: PostgreSQL server log events read by the agent (one row per event,
-- `time` = the event's own time), `log_plans`: auto_explain plans linked to
-- their statement by query_id, and `log_drops`: per agent sample, what the
-- agent dropped (rate cap), cut (line cap) or could not parse.

SELECT lasect_create_metric_table('log', 'metric_log', $cols$
    time         timestamptz NOT NULL,
    instance_id  bigint NOT NULL,
    severity     text NOT NULL,
    sqlstate     text,
    message      text NOT NULL,
    detail       text,
    hint         text,
    context      text,
    statement    text,
    user_name    text,
    database     text,
    application  text,
    pid          integer,
    query_id     bigint,
    duration_ms  double precision,
    source       text NOT NULL
$cols$, 'instance_id');

SELECT lasect_create_metric_table('log_plans', 'metric_log_plans', $cols$
    time         timestamptz NOT NULL,
    instance_id  bigint NOT NULL,
    pid          integer,
    query_id     bigint,
    duration_ms  double precision,
    database     text,
    user_name    text,
    query_text   text,
    plan         text NOT NULL
$cols$, 'instance_id');

SELECT lasect_create_metric_table('log_drops', 'metric_log_drops', $cols$
    time            timestamptz NOT NULL,
    instance_id     bigint NOT NULL,
    dropped_events  bigint NOT NULL,
    truncated_lines bigint NOT NULL,
    unparsed_lines  bigint NOT NULL
$cols$, 'instance_id');
