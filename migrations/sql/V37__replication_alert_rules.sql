-- The default pack's replication rules (issue 21): a stalled initial copy, a subscription
-- whose apply or table-sync workers keep failing, a standby without a WAL receiver and a slot
-- whose WAL is gone or about to be. Each threshold's reason and how each rule is proven are in
-- docs/ALERTS.md. Data only: every condition is of the existing kinds over existing families.
-- A rule of the same name someone wrote before this version is theirs: it stays as it is.
INSERT INTO alert_rules (name, severity, source, condition, for_secs, hysteresis, annotations) VALUES
('subscription_copy_stalled', 'warning', 'default',
 '{"kind": "threshold", "family": "subscription_copy", "column": "tuples_processed", "agg": "rate", "by": ["subname", "schemaname", "relname"], "window_secs": 300, "op": "<=", "threshold": 0}', 300, 0,
 '{"summary": "the initial copy of {{ labels.schemaname }}.{{ labels.relname }} for subscription {{ labels.subname }} on {{ instance }} has copied no row for at least 5 minutes", "runbook": "The table-sync worker waits: on the subscriber look at what its pid waits for (pg_stat_activity.wait_event, pg_locks: a lock on the target table, an uncommitted row with the same key); on the publisher at its walsender (a lock on the source table, the network). PostgreSQL 13 has no copy progress: this rule cannot see copies there."}'),
('subscription_apply_errors', 'critical', 'default',
 '{"kind": "threshold", "family": "subscription", "column": "apply_error_count", "agg": "rate", "by": ["subname"], "window_secs": 300, "op": ">", "threshold": 0.01}', 0, 0,
 '{"summary": "the apply worker of subscription {{ labels.subname }} on {{ instance }} keeps failing ({{ value }} errors/s)", "runbook": "The subscriber cannot apply a transaction (a duplicate key, a missing or different column, a permission): the server log of the subscriber names it. Fix the row or the table, or skip the transaction (ALTER SUBSCRIPTION ... SKIP on 15+). Meanwhile the slot on the publisher retains WAL."}'),
('subscription_sync_errors', 'warning', 'default',
 '{"kind": "threshold", "family": "subscription", "column": "sync_error_count", "agg": "rate", "by": ["subname"], "window_secs": 300, "op": ">", "threshold": 0.01}', 0, 0,
 '{"summary": "the initial copy of a table of subscription {{ labels.subname }} on {{ instance }} keeps failing ({{ value }} errors/s)", "runbook": "A table-sync worker fails and starts the copy again: the subscriber log names the table and the error (rows already in the target table, a column missing on one side). Empty or fix the target table; pg_subscription_rel shows the tables not ready."}'),
('standby_wal_receiver_down', 'warning', 'default',
 '{"kind": "threshold", "family": "standby", "column": "replay_lsn", "agg": "last", "where": [{"column": "receiver_status", "op": "ne", "value": "streaming"}], "window_secs": 30, "op": ">=", "threshold": 0}', 120, 0,
 '{"summary": "standby {{ instance }} has no streaming WAL receiver", "runbook": "The standby does not receive WAL from its primary: check primary_conninfo, the primary (max_wal_senders, pg_hba.conf, its slot) and the network, and the standby log (could not connect, requested WAL segment has already been removed). A standby fed only by restore_command never streams: scope this rule away from it."}'),
('slot_invalidated', 'critical', 'default',
 '{"kind": "events", "family": "replication_slot", "by": ["slot_name"], "where": [{"column": "wal_status", "op": "in", "value": "lost,unreserved"}], "window_secs": 60, "op": ">", "threshold": 0}', 0, 0,
 '{"summary": "replication slot {{ labels.slot_name }} on {{ instance }} has lost (or is about to lose) the WAL its consumer needs (wal_status lost or unreserved)", "runbook": "max_slot_wal_keep_size was exceeded: a lost slot can never be used again (drop it and rebuild the standby or resynchronise the subscription); an unreserved one is lost at the next checkpoint unless its consumer catches up now."}')
ON CONFLICT (name) DO NOTHING;
