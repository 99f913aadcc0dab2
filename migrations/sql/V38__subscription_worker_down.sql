-- `subscription.enabled` and `subscription.apply_worker_running` (issue 21): whether a
-- worker's subscription is enabled (pg_subscription.subenabled) and whether its apply worker
-- has a pid, the same on each row of the subscription. An enabled subscription without an
-- apply worker replicates nothing and may count no error (PostgreSQL 13 and 14 count none; a
-- worker that cannot connect or start counts none on any version), and a rule cannot select
-- a missing pid. Nullable and without a default: rows of older agents have neither, and adding
-- such a column rewrites nothing, neither a native partition nor a compressed chunk.
ALTER TABLE metric_subscription
    ADD COLUMN enabled              boolean,
    ADD COLUMN apply_worker_running boolean;

SELECT lasect_grafana_grant();

-- The default pack's rule on it; the reason for its numbers is in docs/ALERTS.md. `avg`: a
-- worker restarted every wal_retrieve_retry_interval (5 s) that fails at once is seen running
-- in a few samples; below half of the samples of 2 minutes it is down, not restarting. A rule
-- of the same name someone wrote before this version is theirs: it stays as it is.
INSERT INTO alert_rules (name, severity, source, condition, for_secs, hysteresis, annotations) VALUES
('subscription_worker_down', 'warning', 'default',
 '{"kind": "threshold", "family": "subscription", "column": "apply_worker_running", "agg": "avg", "by": ["subname"], "where": [{"column": "enabled", "op": "eq", "value": "true"}], "window_secs": 120, "op": "<", "threshold": 0.5}', 120, 0,
 '{"summary": "subscription {{ labels.subname }} on {{ instance }} is enabled but its apply worker ran in only {{ value | ratio }} of the samples of the last 2 minutes: nothing is replicated", "runbook": "The subscriber log says why the worker stops or does not start: the publisher unreachable or refusing the connection (pg_hba.conf, the role, max_wal_senders), its slot missing or in use by another connection, a transaction it cannot apply (13 and 14 count no error), or max_logical_replication_workers / max_worker_processes exhausted on the subscriber. Meanwhile the slot on the publisher retains WAL. ALTER SUBSCRIPTION ... DISABLE if it is meant to stop."}')
ON CONFLICT (name) DO NOTHING;
