#!/usr/bin/env bash
# `make demo`: the whole Lasect stack on this machine, in the foreground.
#
# - a private PostgreSQL cluster under .lasect/pg serves as the central store
#   (database `lasect`) and as the monitored instance (database `postgres`);
#   it listens on a unix socket only and authenticates by OS identity (peer),
#   so no password exists anywhere;
# - TLS material from `lasect-api ca init` under .lasect/tls;
# - lasect-ingest, lasect-api and one lasect-agent, logs under .lasect/logs;
# - .lasect/demo/env for scripts and the CLI.
# Ctrl-C or SIGTERM stops everything it started. Running it again reuses the
# cluster, the CA and the stored data.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# Of the caller's LASECT_* variables only the demo's ports and LASECT_LOG count:
# an env of another demo (or a real deployment) must not reach these processes.
. "$ROOT/scripts/hermetic.sh"
lasect_hermetic_env LASECT_DEMO_ LASECT_LOG
STATE="$ROOT/.lasect"
DEMO="$STATE/demo"
PGDATA="$STATE/pg/data"
TLS="$STATE/tls"
LOGS="$STATE/logs"
PG_PORT=${LASECT_DEMO_PG_PORT:-55432}
INGEST_PORT=${LASECT_DEMO_INGEST_PORT:-7443}
API_PORT=${LASECT_DEMO_API_PORT:-8443}
AGENT_ID=demo-agent
ME=$(id -un)

# A unix socket path must stay under ~107 bytes.
SOCK="$STATE/pg/run"
if [ ${#SOCK} -gt 80 ]; then SOCK="${TMPDIR:-/tmp}/lasect-demo-$(id -u)"; fi

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh
say "building"
cargo build --workspace --bins --quiet
BIN="$ROOT/target/debug"

mkdir -p "$DEMO" "$TLS" "$LOGS" "$STATE/agent" "$STATE/pg"
chmod 700 "$STATE"
# pgBackRest's posix repository and the config the agent keeps for archive_command
# (docs/BACKUPS.md): both belong to the database OS user.
BACKREST="$STATE/pgbackrest"
BACKREST_CONF="$BACKREST/lasect-demo.conf"
mkdir -p "$BACKREST/repo"

# PostgreSQL refuses to run as root: as root, the cluster belongs to `postgres`.
PGBIN=$( (command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] && pg_config --bindir) \
         || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" -eq 0 ]; then
    PGUSER_OS=postgres
    as_pg() { runuser -u postgres -- "$@"; }
    # postgres must be able to reach .lasect/pg through the checkout.
    chmod 711 "$STATE"
else
    PGUSER_OS=$ME
    as_pg() { "$@"; }
fi

stop_stale() {
    local f pid
    for f in "$DEMO"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$BIN/lasect-"; then
            kill "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
    done
}

PIDS=()
cleanup() {
    trap - INT TERM EXIT
    say "stopping"
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -f "$DEMO"/*.pid
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" stop -m fast >/dev/null 2>&1 || true
    echo "stopped; data kept in .lasect (make clean removes it)"
}
stop_stale

chown "$PGUSER_OS" "$BACKREST" "$BACKREST/repo"
chmod 700 "$BACKREST/repo"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    say "creating the private PostgreSQL cluster in .lasect/pg"
    rm -rf "$PGDATA"
    mkdir -p "$PGDATA"
    chown "$PGUSER_OS" "$STATE/pg" "$PGDATA"
    as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A peer -E UTF8 --locale=C >"$LOGS/initdb.log"
    cat > "$PGDATA/pg_hba.conf" <<HBA
# Unix socket only, OS identity via pg_ident.conf map "lasect"; no passwords.
local all all peer map=lasect
HBA
    {
        echo "lasect $PGUSER_OS postgres"
        echo "lasect $ME postgres"
        echo "lasect $ME lasect"
        echo "lasect $ME lasect_agent"
        echo "lasect $ME lasect_run"
    } > "$PGDATA/pg_ident.conf"
    cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = ''
shared_preload_libraries = 'pg_stat_statements'
CONF
fi
# Clusters made by an older demo lack the run role's mapping.
IDENT_CHANGED=
if ! grep -q " lasect_run\$" "$PGDATA/pg_ident.conf"; then
    echo "lasect $ME lasect_run" >> "$PGDATA/pg_ident.conf"
    IDENT_CHANGED=1
fi
mkdir -p "$SOCK"
chown "$PGUSER_OS" "$SOCK"
# Settings that depend on this run's paths and ports are (re)written each time.
# The server log goes to files the agent tails (the `log` family); readable by the demo's user
# only because this is a private, local demo cluster.
cat > "$PGDATA/postgresql.auto.conf" <<CONF
port = $PG_PORT
unix_socket_directories = '$SOCK'
logging_collector = on
log_destination = 'jsonlog'
log_file_mode = 0644
log_min_duration_statement = 1000
archive_mode = on
archive_command = 'pgbackrest --config=$BACKREST_CONF --stanza=demo archive-push %p'
CONF
chown "$PGUSER_OS" "$PGDATA/postgresql.auto.conf"

if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    say "starting PostgreSQL on $SOCK (port $PG_PORT)"
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$STATE/pg/postgresql.log" -w -t 60 start >/dev/null
fi
if [ -n "$IDENT_CHANGED" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" reload >/dev/null
fi
# A cluster of an older demo runs without WAL archiving: archive_mode needs a restart.
if [ "$(psql -h "$SOCK" -p "$PG_PORT" -U postgres -d postgres -qAt -c "SHOW archive_mode")" != "on" ]; then
    say "restarting PostgreSQL with WAL archiving (pgBackRest)"
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$STATE/pg/postgresql.log" -w -t 60 restart >/dev/null
else
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" reload >/dev/null
fi
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

psql_su() { psql -h "$SOCK" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
psql_su -c "SELECT 1 FROM pg_roles WHERE rolname = 'lasect'" | grep -q 1 \
    || psql_su -c "CREATE ROLE lasect LOGIN"
psql_su -c "SELECT 1 FROM pg_roles WHERE rolname = 'lasect_agent'" | grep -q 1 \
    || psql_su -c "CREATE ROLE lasect_agent LOGIN IN ROLE pg_monitor"
# Read-only runs (sql, explain, export, table data, schema snapshots) log in as their own
# unprivileged role (run_dsn): a READ ONLY transaction alone does not stop a privileged role's
# COPY TO PROGRAM or pg_terminate_backend (docs/CONTROL.md, "Read-only runs").
psql_su -c "SELECT 1 FROM pg_roles WHERE rolname = 'lasect_run'" | grep -q 1 \
    || psql_su -c "CREATE ROLE lasect_run LOGIN"
psql_su -c "GRANT pg_monitor TO lasect_run"
if [ "$(psql_su -c "SHOW server_version_num")" -ge 140000 ]; then
    psql_su -c "GRANT pg_read_all_data TO lasect_run"
fi
psql_su -c "SELECT 1 FROM pg_database WHERE datname = 'lasect'" | grep -q 1 \
    || psql_su -c "CREATE DATABASE lasect OWNER lasect"
# The `statement` family reads pg_stat_statements in the database the agent connects to.
psql_su -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"

STORE_DSN="host=$SOCK port=$PG_PORT dbname=lasect user=lasect application_name=lasect"
AGENT_DSN="host=$SOCK port=$PG_PORT dbname=postgres user=lasect_agent"
RUN_DSN="host=$SOCK port=$PG_PORT dbname=postgres user=lasect_run"

say "migrating the store"
"$BIN/lasect-api" migrate --store-dsn "$STORE_DSN"

# No default password: the API's first start makes the admin with a generated password and
# writes it (0600) to .lasect/demo/admin-password (auth.initial_password_file), never to a log
# or stdout; every run makes a fresh API token for .lasect/demo/env once the API is up.

say "TLS material in .lasect/tls"
"$BIN/lasect-api" ca init --dir "$TLS" --agent "$AGENT_ID"

cat > "$DEMO/ingest.toml" <<TOML
listen = "127.0.0.1:$INGEST_PORT"
store_dsn = "$STORE_DSN"
[tls]
ca_file = "$TLS/ca.pem"
cert_file = "$TLS/ingest.pem"
key_file = "$TLS/ingest.key"
[secrets]
key_file = "$DEMO/secrets.key"
TOML
cat > "$DEMO/api.toml" <<TOML
listen = "127.0.0.1:$API_PORT"
store_dsn = "$STORE_DSN"
[tls]
cert_file = "$TLS/api.pem"
key_file = "$TLS/api.key"
[secrets]
key_file = "$DEMO/secrets.key"
[auth]
initial_password_file = "$DEMO/admin-password"
TOML
cat > "$DEMO/agent.toml" <<TOML
state_dir = "$STATE/agent"
[ingest]
endpoint = "https://127.0.0.1:$INGEST_PORT"
server_name = "lasect-ingest"
[tls]
ca_file = "$TLS/ca.pem"
cert_file = "$TLS/agents/$AGENT_ID.pem"
key_file = "$TLS/agents/$AGENT_ID.key"
[collect]
interval_secs = 10
[control]
# The default read-only classes, plus pgBackRest backups (docs/BACKUPS.md). Add "sql_write",
# "ddl", "import", "dump" or "extensions_write" to try writes.
allow = ["sql", "explain", "explain_analyze", "schema", "table_data", "export", "extensions", "backup"]
[[instances]]
name = "demo"
dsn = "$AGENT_DSN"
run_dsn = "$RUN_DSN"
TOML
chmod 600 "$DEMO"/*.toml

start() {
    local name=$1; shift
    LASECT_LOG=${LASECT_LOG:-info} "$@" >>"$LOGS/$name.log" 2>&1 &
    PIDS+=($!)
    echo $! > "$DEMO/$name.pid"
}
say "starting lasect-ingest, lasect-api, lasect-agent (logs in .lasect/logs)"
start ingest "$BIN/lasect-ingest" --config "$DEMO/ingest.toml"
start api "$BIN/lasect-api" serve --config "$DEMO/api.toml"

API_URL="https://127.0.0.1:$API_PORT"
for _ in $(seq 1 100); do
    curl -sf --cacert "$TLS/ca.pem" "$API_URL/api/v1/health" >/dev/null 2>&1 && break
    sleep 0.2
done
# The API made the admin (first start) before it listened.
DEMO_TOKEN=$("$BIN/lasect-api" admin token --store-dsn "$STORE_DSN" --username admin \
    --name "demo $(date +%Y%m%dT%H%M%S)")
cat > "$DEMO/env" <<ENV
# Source me: . .lasect/demo/env && lasect instance list
export LASECT_URL=$API_URL
export LASECT_CA_FILE=$TLS/ca.pem
export LASECT_TOKEN=$DEMO_TOKEN
export LASECT_STORE_DSN="$STORE_DSN"
export PATH="$BIN:\$PATH"
ENV
chmod 600 "$DEMO/env"

start agent "$BIN/lasect-agent" --config "$DEMO/agent.toml"

cat <<INFO

  Lasect demo is running
    store + monitored PostgreSQL  socket $SOCK, port $PG_PORT (.lasect/pg)
    lasect-ingest (mTLS gRPC)     127.0.0.1:$INGEST_PORT
    lasect-api    (HTTPS)         $API_URL/api/v1/health
    console       (browser)       $API_URL/   user admin, password in .lasect/demo/admin-password
                                  (its certificate is signed by the demo CA, .lasect/tls/ca.pem: trust it or accept it once)
    lasect-agent  ($AGENT_ID)    instance "demo", every 10 s
    logs                          .lasect/logs/
  In another shell:
    . .lasect/demo/env && lasect instance list      (LASECT_TOKEN is an admin API token)
    lasect metrics show --instance demo
    lasect sql run "SELECT now(), version()"        (run by the agent, read-only)
    lasect schema show --refresh                     (schema explorer)
  Log in as a person (user admin, password in .lasect/demo/admin-password):
    lasect login --username admin --url $API_URL --ca-file $TLS/ca.pem
  Ctrl-C stops everything.

INFO

# Show the first database samples as soon as they are stored.
. "$DEMO/env"
for _ in $(seq 1 60); do
    if out=$("$BIN/lasect" metrics show --instance demo --family database 2>/dev/null) && [ -n "$out" ]; then
        say "first samples of instance demo"
        echo "$out"
        break
    fi
    sleep 1
done

# Backups (docs/BACKUPS.md): a repository under .lasect/pgbackrest, its stanza, a first full
# backup and a nightly differential, each once; `lasect backup list` shows what there is.
setup_backups() {
    local lasect="$BIN/lasect" repo
    if ! command -v pgbackrest >/dev/null; then
        echo "pgbackrest is not installed: no backups (scripts/deps.sh installs it)" >&2
        return 1
    fi
    if "$lasect" backup repo list -i demo | grep -q "nothing to show"; then
        "$lasect" backup repo add -i demo --stanza demo --path "$BACKREST/repo" \
            --config-path "$BACKREST_CONF" --retention-full 2 >/dev/null || return 1
    fi
    repo=$("$lasect" backup repo list -i demo -o json | sed -n 's/^ *"id": \([0-9]*\),*$/\1/p' | head -1)
    [ -n "$repo" ] || return 1
    "$lasect" backup stanza create -i demo --repo "$repo" | grep -q succeeded || return 1
    if "$lasect" backup list -i demo | grep -q "nothing to show"; then
        say "taking a first full backup (pgBackRest, through the agent)"
        "$lasect" backup run -i demo --repo "$repo" --type full | grep -q succeeded || return 1
    fi
    if "$lasect" backup schedule list -i demo | grep -q "nothing to show"; then
        "$lasect" backup schedule add --repo "$repo" --cron "0 1 * * *" --type diff >/dev/null \
            || return 1
    fi
    # The API stores the catalogue of a finished backup within a second.
    for _ in $(seq 1 20); do
        "$lasect" backup list -i demo | grep -q "nothing to show" || break
        sleep 0.5
    done
    say "backups of instance demo (lasect backup list; a differential every night at 01:00 UTC)"
    "$lasect" backup list -i demo
}
setup_backups || echo "backups were not set up; see .lasect/logs/agent.log" >&2

# Wait for any process to die (then stop the rest) or for Ctrl-C.
wait -n "${PIDS[@]}" || true
echo "a Lasect process exited; see .lasect/logs" >&2
exit 1
