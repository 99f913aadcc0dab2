#!/bin/sh
# The sample server's first start (from /docker-entrypoint-initdb.d, as postgres): the agent's
# role, with pg_monitor and nothing else, and pg_stat_statements for the statement family.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v agent_pw="$(cat /sample-secrets/agent_password)" <<'SQL'
CREATE ROLE lasect_agent LOGIN PASSWORD :'agent_pw';
GRANT pg_monitor TO lasect_agent;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL
