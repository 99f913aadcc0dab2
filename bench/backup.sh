#!/usr/bin/env bash
# Backup throughput through the agent against pgBackRest by hand (issue 17), run by
# bench/run.sh (`make bench`), or alone: `bench/backup.sh [WORK_DIR]` (LASECT_BENCH_BIN picks
# the binaries, default target/release). Self-contained: one PostgreSQL cluster archiving with
# pgBackRest serves as the store (database `lasect`) and as the backed-up instance; ingest, the
# API and one agent with the `backup` class run on it. Writes target/bench/backup_summary.json
# (summary format):
#   backup_mb_per_s   full backups of the same cluster, alternating: a `backup` run (API to
#                     agent to pgBackRest, from the run's start to its end as the agent reports
#                     them, the catalogue read included) vs `pgbackrest backup` + `info` run by
#                     hand as the database OS user with the same config file; medians of
#                     LASECT_BENCH_BACKUP_ROUNDS (3) rounds each (after one warm-up backup,
#                     the order alternating per round), database MB per second.
# The agent's overhead is what the ratio says (within a few percent is the goal).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${LASECT_BENCH_BIN:-$ROOT/target/release}
OUT="$ROOT/target/bench"
ROUNDS=${LASECT_BENCH_BACKUP_ROUNDS:-3}
# About 250 MB of table data.
ROWS=${LASECT_BENCH_BACKUP_ROWS:-3000000}
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
command -v pgbackrest >/dev/null || { echo "pgbackrest is missing (scripts/deps.sh installs it)" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq is missing (scripts/deps.sh --bench installs it)" >&2; exit 1; }
mkdir -p "$OUT"

OWN_WORK=""
if [ -n "${1:-}" ]; then
    W="$1/backupbench"
else
    OWN_WORK=$(mktemp -d)
    W="$OWN_WORK/backupbench"
fi
mkdir -p "$W"
chmod 711 "$W" "$(dirname "$W")"
PGBIN=$( (command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] && pg_config --bindir) \
         || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" -eq 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
    PGOWNER=postgres
else
    as_pg() { "$@"; }
    PGOWNER=$(id -un)
fi
PG_PORT=$((21000 + RANDOM % 18000))
INGEST_PORT=$((PG_PORT + 1))
API_PORT=$((PG_PORT + 2))
SOCK="$W/sock"
CONF="$W/pgbackrest/bench.conf"
AGENT_ID=backup-bench

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    as_pg "$PGBIN/pg_ctl" -D "$W/pg" stop -m fast >/dev/null 2>&1 || true
    [ -n "$OWN_WORK" ] && rm -rf "$OWN_WORK"
    return 0
}
trap cleanup EXIT

say "backup: a cluster archiving with pgBackRest, $ROWS rows"
mkdir -p "$W/pg" "$SOCK" "$W/pgbackrest/repo"
chown "$PGOWNER" "$W/pg" "$SOCK" "$W/pgbackrest" "$W/pgbackrest/repo"
as_pg "$PGBIN/initdb" -D "$W/pg" -U postgres -A trust -E UTF8 --locale=C >"$OUT/backup-initdb.log"
cat >> "$W/pg/postgresql.conf" <<CONF
listen_addresses = ''
port = $PG_PORT
unix_socket_directories = '$SOCK'
archive_mode = on
archive_command = 'pgbackrest --config=$CONF --stanza=bench archive-push %p'
CONF
as_pg "$PGBIN/pg_ctl" -D "$W/pg" -l "$W/pg/server.log" -w -t 60 start >/dev/null
psql_pg() { psql -h "$SOCK" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
psql_pg -d postgres -c "CREATE DATABASE lasect" \
    -c "CREATE TABLE bench AS SELECT g, md5(g::text) AS h FROM generate_series(1, $ROWS) g"
STORE_DSN="host=$SOCK port=$PG_PORT user=postgres dbname=lasect"
"$BIN/lasect-api" migrate --store-dsn "$STORE_DSN" >"$OUT/backup-migrate.log" 2>&1
"$BIN/lasect-api" ca init --dir "$W/tls" --agent "$AGENT_ID" --store-dsn "$STORE_DSN" \
    >"$OUT/backup-ca.log" 2>&1

cat > "$W/ingest.toml" <<TOML
listen = "127.0.0.1:$INGEST_PORT"
store_dsn = "$STORE_DSN application_name=lasect-ingest"
[tls]
ca_file = "$W/tls/ca.pem"
cert_file = "$W/tls/ingest.pem"
key_file = "$W/tls/ingest.key"
TOML
cat > "$W/api.toml" <<TOML
listen = "127.0.0.1:$API_PORT"
store_dsn = "$STORE_DSN application_name=lasect-api"
[tls]
cert_file = "$W/tls/api.pem"
key_file = "$W/tls/api.key"
[auth]
initial_password_file = "$W/admin-password"
[secrets]
key_file = "$W/secrets.key"
TOML
cat > "$W/agent.toml" <<TOML
state_dir = "$W/agent"
[ingest]
endpoint = "https://127.0.0.1:$INGEST_PORT"
server_name = "lasect-ingest"
[tls]
ca_file = "$W/tls/ca.pem"
cert_file = "$W/tls/agents/$AGENT_ID.pem"
key_file = "$W/tls/agents/$AGENT_ID.key"
[collect]
interval_secs = 10
[control]
allow = ["sql", "backup"]
max_timeout_secs = 3600
[[instances]]
name = "bench"
dsn = "host=$SOCK port=$PG_PORT user=postgres dbname=postgres"
TOML
LASECT_LOG=warn "$BIN/lasect-ingest" --config "$W/ingest.toml" >"$OUT/backup-ingest.log" 2>&1 &
PIDS+=($!)
LASECT_LOG=warn "$BIN/lasect-api" serve --config "$W/api.toml" >"$OUT/backup-api.log" 2>&1 &
PIDS+=($!)
API="https://127.0.0.1:$API_PORT/api/v1"
for _ in $(seq 1 150); do
    curl -sf --cacert "$W/tls/ca.pem" "$API/health" >/dev/null 2>&1 && break
    sleep 0.2
done
LASECT_LOG=warn "$BIN/lasect-agent" --config "$W/agent.toml" >"$OUT/backup-agent.log" 2>&1 &
PIDS+=($!)
TOKEN=$("$BIN/lasect-api" admin token --store-dsn "$STORE_DSN" --username admin --name "backup bench" 2>>"$OUT/backup-api.log")
api() {
    local method=$1 path=$2; shift 2
    curl -sf --cacert "$W/tls/ca.pem" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -X "$method" "$API/$path" "$@"
}
INSTANCE=""
for _ in $(seq 1 150); do
    INSTANCE=$(api GET instances | jq -r '.instances[] | select(.name == "bench") | .id' 2>/dev/null || true)
    [ -n "$INSTANCE" ] && break
    sleep 0.2
done
[ -n "$INSTANCE" ] || { echo "the agent's instance never appeared (target/bench/backup-agent.log)" >&2; exit 1; }
REPO=$(api POST "instances/$INSTANCE/backup/repositories" -d "$(jq -n --arg p "$W/pgbackrest/repo" \
    --arg c "$CONF" '{stanza: "bench", path: $p, config_path: $c, retention_full: 2}')" | jq -r .id)

# Waits for a run to end: its JSON.
run_done() {
    local id=$1 run
    while :; do
        run=$(api GET "runs/$id?wait=60")
        case $(jq -r .status <<<"$run") in
            succeeded) echo "$run"; return 0 ;;
            failed|timed_out|cancelled|expired) echo "run $id: $run" >&2; return 1 ;;
        esac
    done
}
epoch() { date -d "$1" +%s.%N; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

say "backup: stanza-create through the agent"
run_done "$(api POST "instances/$INSTANCE/backup/repositories/$REPO/stanza?wait=60" \
    -d '{"action": "create"}' | jq -r .id)" >/dev/null

AGENT_SECS=()
HAND_SECS=()
SIZE=0
through_agent() {
    say "backup: round $round/$ROUNDS, through the agent"
    local run
    run=$(run_done "$(api POST "instances/$INSTANCE/backup/repositories/$REPO/backups?wait=0" \
        -d '{"type": "full"}' | jq -r .id)")
    AGENT_SECS+=("$(minus "$(epoch "$(jq -r .finished_at <<<"$run")")" "$(epoch "$(jq -r .started_at <<<"$run")")")")
    SIZE=$(jq -r .summary.backup.database_size <<<"$run")
}
by_hand() {
    say "backup: round $round/$ROUNDS, by hand"
    local start
    start=$(date +%s.%N)
    as_pg pgbackrest --config="$CONF" --stanza=bench backup --type=full >>"$OUT/backup-hand.log" 2>&1
    as_pg pgbackrest --config="$CONF" --stanza=bench info --output=json >/dev/null
    HAND_SECS+=("$(minus "$(date +%s.%N)" "$start")")
}
# One warm-up backup by hand first (the cluster's files into the page cache, the first WAL
# archived), then the order alternates: whichever goes second in a round would otherwise always
# find the other's leftovers (cache, the previous full backup's expire).
say "backup: warm-up"
as_pg pgbackrest --config="$CONF" --stanza=bench backup --type=full >>"$OUT/backup-hand.log" 2>&1
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
        through_agent
        by_hand
    else
        by_hand
        through_agent
    fi
done

jq -n --argjson size "$SIZE" \
    --argjson agent "$(printf '%s\n' "${AGENT_SECS[@]}" | jq -s .)" \
    --argjson hand "$(printf '%s\n' "${HAND_SECS[@]}" | jq -s .)" '
  def r: (. * 1000 | round) / 1000;
  def median: sort | .[(length / 2 | floor)];
  ($size / 1e6) as $mb |
  ($mb / ($agent | median)) as $a | ($mb / ($hand | median)) as $h |
  [{name: "backup_mb_per_s", unit: "MB/s", lasect: ($a | r), reference: ($h | r),
    reference_name: "pgbackrest backup + info by hand on the same cluster and config",
    ratio: ($a / $h | r), better: "higher", database_mb: ($mb | r),
    agent_secs: ($agent | map(r)), hand_secs: ($hand | map(r)),
    note: "full backups after a warm-up, the order alternating per round; the run is timed from its start to its end as the agent reports them"}]
' >"$OUT/backup_summary.json"
jq . "$OUT/backup_summary.json" >&2
