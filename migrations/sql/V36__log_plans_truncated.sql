-- `log_plans.plan_truncated`: the agent cut the plan (over its plan cap) or its query text;
-- NULL in rows of older agents, which cut long plans without saying so. Nullable and without
-- a default: no rewrite of native partitions, accepted on compressed hypertables.
ALTER TABLE metric_log_plans ADD COLUMN plan_truncated boolean;

SELECT lasect_grafana_grant();
