#!/bin/sh
# The store's first start (run by the image's entrypoint from /docker-entrypoint-initdb.d, as
# postgres, against the server it started for initialisation): the Lasect role and database,
# Grafana's read-only login, TLS required for every TCP connection. Passwords come from the files
# init.sh generated; none is written anywhere else. TimescaleDB: the image preloads it and its
# extension is trusted, so the first migration creates it as the database's owner.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v lasect_pw="$(cat /store-secrets/lasect_password)" \
    -v grafana_pw="$(cat /store-secrets/grafana_password)" <<'SQL'
CREATE ROLE lasect LOGIN PASSWORD :'lasect_pw';
CREATE DATABASE lasect OWNER lasect;
-- Grafana's login, a member of the read-only group role that migration V24 grants SELECT on
-- the metric tables to. The store's owner may not create roles, so the group is made here,
-- before the first migration, which then finds it and grants to it.
CREATE ROLE lasect_grafana NOLOGIN;
CREATE ROLE grafana LOGIN PASSWORD :'grafana_pw' IN ROLE lasect_grafana;
ALTER SYSTEM SET ssl = on;
ALTER SYSTEM SET ssl_cert_file = '/store-tls/server.pem';
ALTER SYSTEM SET ssl_key_file = '/store-tls/server.key';
SQL
# The image allows password logins from anywhere with or without TLS; require TLS.
sed -i 's/^host all all all scram-sha-256$/hostssl all all all scram-sha-256/' "$PGDATA/pg_hba.conf"
