-- Transaction id and multixact wraparound age (issue 18's default pack item):
-- age(pg_database.datfrozenxid) and mxid_age(pg_database.datminmxid), per
-- database. Two columns of the `database` family rather than a family of their
-- own: they have its key (one row per database), are read by the query that
-- already reads pg_database, and a DBA's question ("which database is closest to
-- wraparound, and how fast is it getting there") is then one table.
--
-- Nullable and without a default: rows written before this migration (and by
-- agents that do not send them yet) have no age, and adding such a column
-- rewrites nothing, neither a native partition nor a compressed chunk.
ALTER TABLE metric_database
    ADD COLUMN datfrozenxid_age integer,
    ADD COLUMN datminmxid_age   integer;

-- A table-level grant covers new columns already; granting again keeps this
-- migration right should the grant ever become column by column.
SELECT lasect_grafana_grant();

-- The default pack's wraparound rules; each threshold's reason is in docs/ALERTS.md.
-- Both counters wrap at 2^31 = 2147483648: the warning is at half of it (2^30), the
-- critical level at 1.5e9, which leaves ~650 million ids for the emergency VACUUM.
-- The maximum over 5 minutes: an alert ends at most 5 minutes after the VACUUM
-- (FREEZE) that cures it, and the four statements stay cheap on a fleet (a quarter
-- of what `last` over 15 minutes costs); `family_silent_database` already expects a
-- database sample at least every 5 minutes. A rule of the same name someone wrote
-- before this version is theirs: it stays as it is.
INSERT INTO alert_rules (name, severity, source, condition, for_secs, hysteresis, annotations) VALUES
('xid_wraparound_warning', 'warning', 'default',
 '{"kind": "threshold", "family": "database", "column": "datfrozenxid_age", "agg": "max", "by": ["datname"], "window_secs": 300, "op": ">", "threshold": 1073741824}', 0, 50000000,
 '{"summary": "database {{ labels.datname }} on {{ instance }} is {{ value | round }} transaction ids old (age(datfrozenxid)); wraparound stops writes at 2^31 = 2147483648", "runbook": "Anti-wraparound autovacuum is not keeping up: find the oldest tables (age(relfrozenxid)), what holds back the xmin horizon (long transactions, prepared transactions, replication slots, hot_standby_feedback), and run VACUUM (FREEZE, VERBOSE) on them."}'),
('xid_wraparound_critical', 'critical', 'default',
 '{"kind": "threshold", "family": "database", "column": "datfrozenxid_age", "agg": "max", "by": ["datname"], "window_secs": 300, "op": ">", "threshold": 1500000000}', 0, 50000000,
 '{"summary": "database {{ labels.datname }} on {{ instance }} is {{ value | round }} transaction ids old (age(datfrozenxid)): wraparound stops writes just before 2^31 = 2147483648", "runbook": "Act now: end what holds back the xmin horizon (long or prepared transactions, stale replication slots), then VACUUM (FREEZE) the oldest tables of the database first (age(relfrozenxid)), with vacuum_cost_delay = 0."}'),
('multixact_wraparound_warning', 'warning', 'default',
 '{"kind": "threshold", "family": "database", "column": "datminmxid_age", "agg": "max", "by": ["datname"], "window_secs": 300, "op": ">", "threshold": 1073741824}', 0, 50000000,
 '{"summary": "database {{ labels.datname }} on {{ instance }} is {{ value | round }} multixacts old (mxid_age(datminmxid)); wraparound stops writes at 2^31 = 2147483648", "runbook": "Multixacts come from row locks shared by several transactions (foreign keys, SELECT FOR SHARE): find the oldest tables (mxid_age(relminmxid)) and VACUUM (FREEZE) them; see what holds back the xmin horizon."}'),
('multixact_wraparound_critical', 'critical', 'default',
 '{"kind": "threshold", "family": "database", "column": "datminmxid_age", "agg": "max", "by": ["datname"], "window_secs": 300, "op": ">", "threshold": 1500000000}', 0, 50000000,
 '{"summary": "database {{ labels.datname }} on {{ instance }} is {{ value | round }} multixacts old (mxid_age(datminmxid)): wraparound stops writes just before 2^31 = 2147483648", "runbook": "Act now: end what holds back the xmin horizon, then VACUUM (FREEZE) the tables with the oldest relminmxid first, with vacuum_cost_delay = 0."}')
ON CONFLICT (name) DO NOTHING;
