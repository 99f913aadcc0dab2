-- Alerting (issue 18): rules, one alert per rule and key, every state change, silences, and
-- the lease that makes several API processes evaluate once per interval.
--
-- The API validates every rule before it writes one (api/src/alerts/rule.rs): `scope` and
-- `condition` are the validated JSON of the rule model, never SQL. Evaluation turns them into
-- SQL over the metric tables from the API's list of families and columns only.

CREATE TABLE alert_rules (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    enabled     boolean NOT NULL DEFAULT true,
    -- `default`: shipped in the default pack (this migration); `user`: written by someone.
    -- A default rule can be changed or disabled but not deleted, so the pack stays complete.
    source      text NOT NULL DEFAULT 'user' CHECK (source IN ('default', 'user')),
    -- {"instance_id": n} | {"selector": "env=prod,tier!=batch"} | {} (every instance).
    scope       jsonb NOT NULL DEFAULT '{}',
    condition   jsonb NOT NULL,
    for_secs    integer NOT NULL DEFAULT 0 CHECK (for_secs BETWEEN 0 AND 604800),
    hysteresis  double precision NOT NULL DEFAULT 0 CHECK (hysteresis >= 0),
    labels      jsonb NOT NULL DEFAULT '{}',
    -- Templates (`{{ value }}`, `{{ labels.datname }}` …) rendered per alert.
    annotations jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT 'system',
    -- How the last evaluation of this rule went (the API's metrics count the same).
    last_evaluated_at timestamptz,
    last_error        text
);

-- One alert per rule and key: `key` is the canonical text of (instance or agent, key labels).
-- Rows exist from the first time the condition held; `inactive` is a pending alert whose
-- condition stopped holding before `for` elapsed.
CREATE TABLE alert_instances (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id         bigint NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    key             text NOT NULL,
    instance_id     bigint REFERENCES instances (id) ON DELETE CASCADE,
    agent_id        text,
    key_labels      jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL CHECK (state IN ('inactive', 'pending', 'firing', 'resolved')),
    -- When the current state began.
    since           timestamptz NOT NULL,
    last_value      double precision,
    last_evaluated  timestamptz NOT NULL,
    labels          jsonb NOT NULL DEFAULT '{}',
    annotations     jsonb NOT NULL DEFAULT '{}',
    acknowledged_by text,
    acknowledged_at timestamptz,
    UNIQUE (rule_id, key)
);
CREATE INDEX alert_instances_state ON alert_instances (state) WHERE state IN ('pending', 'firing');

-- Every transition, in the transaction that made it. The notifier (a later part of issue 18)
-- reads this table in id order: a state change and its notification commit together.
CREATE TABLE alert_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    alert_id    bigint REFERENCES alert_instances (id) ON DELETE SET NULL,
    rule_id     bigint REFERENCES alert_rules (id) ON DELETE SET NULL,
    rule_name   text NOT NULL,
    severity    text NOT NULL,
    key         text NOT NULL,
    instance_id bigint,
    agent_id    text,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    value       double precision,
    threshold   double precision,
    labels      jsonb NOT NULL DEFAULT '{}',
    annotations jsonb NOT NULL DEFAULT '{}',
    -- A matching silence was active: recorded, not to be notified.
    silenced    boolean NOT NULL DEFAULT false
);
CREATE INDEX alert_events_at ON alert_events (at);
CREATE INDEX alert_events_rule ON alert_events (rule_id, at);
CREATE INDEX alert_events_instance ON alert_events (instance_id, at);

CREATE TABLE alert_silences (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Same syntax as a rule's selector, over an alert's labels (`alertname`, `severity`,
    -- `instance`, `agent`, the instance's labels, the rule's labels and the key labels).
    matchers   text NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    comment    text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    removed_at timestamptz,
    removed_by text,
    CHECK (ends_at > starts_at)
);

-- The evaluation lease: one row. An evaluator claims a tick with
-- `UPDATE … WHERE last_tick <= at - interval` inside the transaction that evaluates and writes
-- the states; a concurrent claimer waits on the row lock and then finds the tick taken.
CREATE TABLE alert_evaluator (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_tick timestamptz NOT NULL DEFAULT '-infinity',
    holder    text
);
INSERT INTO alert_evaluator DEFAULT VALUES;

-- The default pack. Each threshold's reason is in docs/ALERTS.md.
INSERT INTO alert_rules (name, severity, source, condition, for_secs, hysteresis, annotations) VALUES
('agent_silent', 'critical', 'default',
 '{"kind": "absence", "target": "agent", "seconds": 120}', 0, 0,
 '{"summary": "agent {{ agent }} has sent nothing for {{ value | duration }}", "runbook": "Is lasect-agent running on the host, and can it reach ingest? Check its log and spool backlog."}'),
('instance_silent', 'critical', 'default',
 '{"kind": "absence", "target": "instance", "seconds": 180}', 0, 0,
 '{"summary": "no samples of instance {{ instance }} for {{ value | duration }}", "runbook": "The agent runs but cannot collect this instance: is PostgreSQL up, does the DSN still log in?"}'),
('family_silent_activity', 'warning', 'default',
 '{"kind": "absence", "target": "family", "family": "activity", "seconds": 300}', 0, 0,
 '{"summary": "activity samples of {{ instance }} stopped {{ value | duration }} ago", "runbook": "A collector fails while others work: look at the collector_event samples of the instance."}'),
('family_silent_database', 'warning', 'default',
 '{"kind": "absence", "target": "family", "family": "database", "seconds": 300}', 0, 0,
 '{"summary": "database samples of {{ instance }} stopped {{ value | duration }} ago", "runbook": "A collector fails while others work: look at the collector_event samples of the instance."}'),
('replication_lag_bytes', 'warning', 'default',
 '{"kind": "threshold", "family": "replication", "column": "replay_lag_bytes", "agg": "avg", "by": ["application_name"], "window_secs": 300, "op": ">", "threshold": 1073741824}', 300, 134217728,
 '{"summary": "replica {{ labels.application_name }} of {{ instance }} is {{ value | bytes }} behind in replay", "runbook": "Is the replica applying (replay paused, conflicts, slow disk)? Is the network saturated?"}'),
('replication_lag_seconds', 'warning', 'default',
 '{"kind": "threshold", "family": "replication", "column": "replay_lag_seconds", "agg": "avg", "by": ["application_name"], "window_secs": 300, "op": ">", "threshold": 300}', 300, 30,
 '{"summary": "replica {{ labels.application_name }} of {{ instance }} replays {{ value | duration }} late", "runbook": "Long queries on the replica (max_standby_streaming_delay), replay paused, or I/O."}'),
('slot_inactive_retaining_wal', 'warning', 'default',
 '{"kind": "threshold", "family": "replication_slot", "column": "retained_bytes", "agg": "last", "by": ["slot_name"], "where": [{"column": "active", "op": "eq", "value": "false"}], "window_secs": 600, "op": ">", "threshold": 5368709120}', 900, 536870912,
 '{"summary": "inactive slot {{ labels.slot_name }} on {{ instance }} retains {{ value | bytes }} of WAL", "runbook": "Drop the slot if its consumer is gone (pg_drop_replication_slot), or bring the consumer back; set max_slot_wal_keep_size."}'),
('connections_near_max', 'warning', 'default',
 '{"kind": "threshold", "family": "activity", "column": "connection_use_percent", "agg": "avg", "window_secs": 300, "op": ">", "threshold": 85}', 300, 5,
 '{"summary": "{{ instance }} uses {{ value | percent }} of max_connections", "runbook": "Find who holds connections (activity_sessions); use a pooler; check for leaks and idle sessions."}'),
('long_running_transaction', 'warning', 'default',
 '{"kind": "threshold", "family": "activity", "column": "oldest_xact_age_seconds", "agg": "last", "window_secs": 120, "op": ">", "threshold": 3600}', 60, 60,
 '{"summary": "a transaction on {{ instance }} has been open for {{ value | duration }}", "runbook": "It holds back vacuum and may hold locks: find it in pg_stat_activity (xact_start) and ask its owner."}'),
('idle_in_transaction', 'warning', 'default',
 '{"kind": "threshold", "family": "activity", "column": "oldest_idle_in_xact_age_seconds", "agg": "last", "window_secs": 120, "op": ">", "threshold": 300}', 60, 30,
 '{"summary": "a session on {{ instance }} has been idle in transaction for {{ value | duration }}", "runbook": "An application opened a transaction and forgot it: find it (state = idle in transaction), fix the application; set idle_in_transaction_session_timeout."}'),
('sessions_blocked', 'warning', 'default',
 '{"kind": "threshold", "family": "lock_waits", "column": "wait_seconds", "agg": "last", "window_secs": 30, "op": ">", "threshold": 60}', 0, 10,
 '{"summary": "a session on {{ instance }} has waited {{ value | duration }} for a lock", "runbook": "Look at the blocking chain (lock_waits: blocking_pid, blocking_query); end the blocker if it is stuck."}'),
('archiver_failing', 'critical', 'default',
 '{"kind": "threshold", "family": "archiver", "column": "failed_count", "agg": "rate", "window_secs": 900, "op": ">", "threshold": 0}', 300, 0,
 '{"summary": "WAL archiving on {{ instance }} fails ({{ value }} failures/s)", "runbook": "Read the server log for archive_command errors; WAL accumulates in pg_wal until archiving works."}'),
('checkpoints_requested', 'info', 'default',
 '{"kind": "threshold", "family": "bgwriter", "column": "checkpoints_req", "agg": "rate", "denominator": ["checkpoints_req", "checkpoints_timed"], "window_secs": 3600, "op": ">", "threshold": 0.5}', 1800, 0.1,
 '{"summary": "{{ value | ratio }} of checkpoints on {{ instance }} are requested, not timed", "runbook": "max_wal_size is too small for the write load: raise it so checkpoints come from checkpoint_timeout."}'),
('deadlocks', 'warning', 'default',
 '{"kind": "threshold", "family": "database", "column": "deadlocks", "agg": "rate", "by": ["datname"], "window_secs": 900, "op": ">", "threshold": 0}', 0, 0,
 '{"summary": "deadlocks in database {{ labels.datname }} on {{ instance }}", "runbook": "The server log shows both statements of each deadlock: make the application take locks in one order."}'),
('temp_files_growth', 'info', 'default',
 '{"kind": "threshold", "family": "database", "column": "temp_bytes", "agg": "rate", "by": ["datname"], "window_secs": 900, "op": ">", "threshold": 10485760}', 900, 1048576,
 '{"summary": "database {{ labels.datname }} on {{ instance }} writes {{ value | bytes }}/s of temporary files", "runbook": "Sorts and hashes spill to disk: find the statements (temp_blks_written), add indexes or raise work_mem for them."}'),
('cache_hit_ratio_low', 'info', 'default',
 '{"kind": "threshold", "family": "database", "column": "blks_hit", "agg": "rate", "denominator": ["blks_hit", "blks_read"], "by": ["datname"], "window_secs": 1800, "op": "<", "threshold": 0.9}', 1800, 0.02,
 '{"summary": "cache hit ratio of {{ labels.datname }} on {{ instance }} is {{ value | ratio }}", "runbook": "The working set no longer fits shared_buffers (or a new query scans a lot): check statements by shared_blks_read."}'),
('filesystem_full_forecast', 'critical', 'default',
 '{"kind": "forecast", "family": "host_filesystem", "column": "free_bytes", "by": ["mount_point"], "window_secs": 21600, "horizon_secs": 86400, "op": "<", "threshold": 0}', 1800, 0,
 '{"summary": "{{ labels.mount_point }} of {{ instance }} fills up within 24 h at the current rate", "runbook": "Find what grows (WAL retained by a slot, tables, logs, temp files) and act before PostgreSQL stops."}'),
('settings_pending_restart', 'info', 'default',
 '{"kind": "threshold", "family": "settings", "column": "pending_restart", "agg": "last", "by": ["name"], "window_secs": 900, "op": ">", "threshold": 0}', 0, 0,
 '{"summary": "setting {{ labels.name }} of {{ instance }} changed and waits for a restart", "runbook": "The new value only applies after a restart: plan one, or revert the change."}'),
('collector_failing', 'info', 'default',
 '{"kind": "events", "family": "collector_event", "by": ["collector"], "window_secs": 900, "op": ">", "threshold": 0}', 0, 0,
 '{"summary": "collector {{ labels.collector }} fails on {{ instance }}", "runbook": "The collector_event samples say why (missing extension, privilege, timeout); the family is missing until it is fixed."}'),
('log_corruption', 'critical', 'default',
 '{"kind": "events", "family": "log", "where": [{"column": "sqlstate", "op": "prefix", "value": "XX"}], "window_secs": 900, "op": ">", "threshold": 0}', 0, 0,
 '{"summary": "{{ value }} internal errors (SQLSTATE class XX: corrupted data or index) logged by {{ instance }}", "runbook": "Read the log entries now: XX001 data_corrupted, XX002 index_corrupted. Check the storage, amcheck the indexes, restore from backup if needed."}'),
('log_panic', 'critical', 'default',
 '{"kind": "events", "family": "log", "where": [{"column": "severity", "op": "eq", "value": "PANIC"}], "window_secs": 900, "op": ">", "threshold": 0}', 0, 0,
 '{"summary": "{{ instance }} logged PANIC: the server restarted every session", "runbook": "Read the log around the PANIC (often WAL write or fsync failure, or a full disk)."}'),
('runs_failed', 'warning', 'default',
 '{"kind": "events", "family": "runs", "by": ["kind"], "where": [{"column": "kind", "op": "in", "value": "migration,dump_sql,import_csv,schema_snapshot"}, {"column": "status", "op": "in", "value": "failed,timed_out"}], "window_secs": 3600, "op": ">", "threshold": 0}', 0, 0,
 '{"summary": "{{ value }} {{ labels.kind }} run(s) on {{ instance }} failed in the last hour", "runbook": "lasect run list shows them with their error; a failed migration halts its fleet migration."}'),
('schema_breaking_change', 'info', 'default',
 '{"kind": "events", "family": "schema_changes", "by": ["database"], "where": [{"column": "classification", "op": "eq", "value": "breaking"}], "window_secs": 3600, "op": ">", "threshold": 0}', 0, 0,
 '{"summary": "{{ value }} breaking schema change(s) in {{ labels.database }} on {{ instance }}", "runbook": "lasect schema changes lists them (a dropped column, a changed type): check that every client was ready."}');
