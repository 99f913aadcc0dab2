#!/usr/bin/env bash
# The agent benchmarks of issue 3, run by bench/run.sh (`make bench`) with
# the release binaries and the store + lasect-ingest it started:
#   bench/agent.sh WORK_DIR INGEST_PORT TLS_DIR STORE_SOCKET_DIR STORE_PORT
# Writes target/bench/agent_summary.json (entries in the summary format):
#   agent_rss_mib            peak RSS (VmHWM) of lasect-agent vs prometheus-postgres-exporter
#   agent_cpu_ms_per_cycle   utime+stime per 10 s cycle vs per scrape
#   statement_cycle_ms       steady-state statement cycle vs reading texts every cycle
#   wire_bytes_per_sample_real_agent
#                            the real agent's batches of this cluster (default family
#                            intervals, 125 s) as delta pushes vs
#                            JSON+gzip of the same samples (the loadgen's figure is for
#                            generated batches; this is what real servers' names and
#                            counters cost, against a dictionary that never saw them)
#
# One monitored PostgreSQL cluster (not the store): a `bench` database with
# 200 tables (each with an index), 2,000+ distinct statements in
# pg_stat_statements and a rate-limited pgbench load. The agent and the
# exporter watch it side by side, in the same window:
# - every agent family runs every 10 s (the per-family defaults are 10-300 s;
#   the exporter runs all its queries on every scrape, so this is the same
#   cadence), host families included, and the agent pushes every batch
#   through its spool (fsync every batch) over mTLS gRPC to the real
#   lasect-ingest and store: the whole pipeline of a deployment;
# - the exporter (the Debian package) runs its defaults plus the package's
#   example queries (tables, statio, pg_stat_statements; its PG12 column
#   names renamed for PG13+) and is scraped every 10 s.
# CPU is utime+stime from /proc/<pid>/stat over the measured window (after a
# warm-up that covers the first cycles), divided by the window's 10 s cycles
# (agent) or by the scrapes done in it (exporter).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# Run by run.sh, whose environment is already clean, or alone.
. "$ROOT/scripts/hermetic.sh"
lasect_hermetic_env LASECT_BENCH_
BIN="$ROOT/target/release"
OUT="$ROOT/target/bench"
WORK_DIR=${1:?usage: bench/agent.sh WORK_DIR INGEST_PORT TLS_DIR STORE_SOCKET_DIR STORE_PORT}
INGEST_PORT=${2:?ingest port}
TLS=${3:?tls dir}
STORE_SOCK=${4:?store socket dir}
STORE_PORT=${5:?store port}
INTERVAL=10
WARMUP=${LASECT_BENCH_AGENT_WARMUP:-25}
WINDOW=${LASECT_BENCH_AGENT_SECS:-120}
# The wire agent's run, after the measured window: batches every 10 s.
WIRE_SECS=${LASECT_BENCH_AGENT_WIRE_SECS:-125}
TABLES=200
STATEMENTS=2000
AGENT_ID=bench-agent

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

W="$WORK_DIR/agentbench"
mkdir -p "$W"
chmod 711 "$W"
PGDATA="$W/pg"
SOCK="$W/sock"
PG_PORT=$((INGEST_PORT + 10))
EXPORTER_PORT=$((INGEST_PORT + 11))
PGBIN=$( (command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] && pg_config --bindir) \
         || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" -eq 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
    PGOWNER=postgres
else
    as_pg() { "$@"; }
    PGOWNER=$(id -un)
fi
EXPORTER=$(command -v prometheus-postgres-exporter || true)
[ -n "$EXPORTER" ] || { echo "prometheus-postgres-exporter is missing (scripts/deps.sh --bench installs it)" >&2; exit 1; }

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" stop -m fast >/dev/null 2>&1 || true
    # The server writes its log as its own OS user, so into the temp dir.
    cp "$W/pglog/postgresql.log" "$OUT/agent-monitored-pg.log" 2>/dev/null || true
}
trap cleanup EXIT

say "agent bench: building the statement cycle program"
cargo build --release -p lasect-agent --example statement_cycle --quiet

say "agent bench: monitored cluster with $TABLES tables and $STATEMENTS+ statements"
mkdir -p "$PGDATA" "$SOCK" "$W/pglog"
chown "$PGOWNER" "$PGDATA" "$SOCK" "$W/pglog"
as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C >"$OUT/agent-initdb.log"
cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PG_PORT
unix_socket_directories = '$SOCK'
shared_buffers = 128MB
max_connections = 50
shared_preload_libraries = 'pg_stat_statements'
compute_query_id = on
# Room for the 5,000 long statements of statement_cycle_ms and the rest.
pg_stat_statements.max = 10000
pg_stat_statements.track = top
# DDL of the setup would only take entries.
pg_stat_statements.track_utility = off
CONF
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$W/pglog/postgresql.log" -w -t 60 start >/dev/null
psql_m() { psql -h "$SOCK" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
psql_m -d postgres -c "CREATE DATABASE bench" >/dev/null
psql_m -d postgres -c "CREATE EXTENSION pg_stat_statements" >/dev/null
psql_m -d bench -c "CREATE EXTENSION pg_stat_statements" >/dev/null
# A slot, so that replication_slot has something to report on a lone primary.
psql_m -d postgres -c "SELECT pg_create_physical_replication_slot('bench_slot', true)" >/dev/null
pgbench -h "$SOCK" -p "$PG_PORT" -U postgres -i -s 5 -q bench >"$OUT/agent-pgbench-init.log" 2>&1
# 200 tables with an index and some rows each; 10 query shapes per table give
# 2,000 distinct statements (plus pgbench's and the collectors' own).
{
    for t in $(seq 0 $((TABLES - 1))); do
        echo "CREATE TABLE t$t (id int PRIMARY KEY, c1 int, c2 int, c3 text);"
        echo "INSERT INTO t$t SELECT g, g % 7, g % 11, md5(g::text) FROM generate_series(1, 200) g;"
    done
    echo "ANALYZE;"
} | psql_m -d bench >/dev/null
gen_statements() {
    for t in $(seq 0 $((TABLES - 1))); do
        for c in c1 c2; do
            echo "SELECT count(*) FROM t$t WHERE $c = 1;"
            echo "SELECT max(id) FROM t$t WHERE $c < 3;"
            echo "SELECT id, c3 FROM t$t WHERE $c = 2 ORDER BY id LIMIT 5;"
            echo "UPDATE t$t SET c3 = c3 WHERE id = 1 AND $c IS NOT NULL;"
            echo "SELECT sum(id) FROM t$t WHERE $c IN (1, 2) GROUP BY $c;"
        done
    done
}
gen_statements >"$W/statements.sql"
psql_m -d bench -f "$W/statements.sql" >/dev/null
DISTINCT=$(psql_m -d bench -c "SELECT count(DISTINCT queryid) FROM pg_stat_statements(false)")
say "pg_stat_statements holds $DISTINCT distinct statements"
[ "$DISTINCT" -ge "$STATEMENTS" ] || { echo "only $DISTINCT statements" >&2; exit 1; }

# The agent: every configurable family every 10 s, pushing to the real ingest.
"$BIN/lasect-api" ca init --dir "$TLS" --agent "$AGENT_ID" >"$OUT/agent-ca.log" 2>&1
FAMILIES="database statement table index wal bgwriter archiver settings activity lock replication replication_slot progress wait host"
INTERVALS=$(for f in $FAMILIES; do printf '%s = %s, ' "$f" "$INTERVAL"; done)
cat > "$W/agent.toml" <<TOML
state_dir = "$W/agent-state"
[ingest]
endpoint = "https://127.0.0.1:$INGEST_PORT"
server_name = "lasect-ingest"
[tls]
ca_file = "$TLS/ca.pem"
cert_file = "$TLS/agents/$AGENT_ID.pem"
key_file = "$TLS/agents/$AGENT_ID.key"
[collect]
interval_secs = $INTERVAL
host = true
intervals = { ${INTERVALS%, } }
[spool]
fsync = "every_batch"
[[instances]]
name = "bench"
dsn = "host=$SOCK port=$PG_PORT user=postgres dbname=bench application_name=lasect-agent"
TOML
"$BIN/lasect-agent" check-config --config "$W/agent.toml" >"$OUT/agent-check-config.log"

# The exporter: defaults plus the package's example queries, fixed for PG13+.
QUERIES_SRC=/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml
if [ -f "$QUERIES_SRC" ]; then
    sed -E 's/\b(total|min|max|mean|stddev)_time\b/\1_exec_time/g' "$QUERIES_SRC" >"$W/queries.yaml"
elif [ -f "$QUERIES_SRC.gz" ]; then
    zcat "$QUERIES_SRC.gz" | sed -E 's/\b(total|min|max|mean|stddev)_time\b/\1_exec_time/g' >"$W/queries.yaml"
else
    echo "the exporter's example queries.yaml is missing" >&2; exit 1
fi

say "load: pgbench (rate-limited) for the whole run"
pgbench -h "$SOCK" -p "$PG_PORT" -U postgres -c 2 -j 1 -R 50 -T $((WARMUP + WINDOW + WIRE_SECS + 30)) bench \
    >"$OUT/agent-pgbench.log" 2>&1 &
PIDS+=($!)

say "starting lasect-agent and prometheus-postgres-exporter"
LASECT_LOG=warn "$BIN/lasect-agent" --config "$W/agent.toml" >"$OUT/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
DATA_SOURCE_NAME="host=$SOCK port=$PG_PORT user=postgres dbname=bench sslmode=disable application_name=postgres_exporter" \
    "$EXPORTER" --web.listen-address="127.0.0.1:$EXPORTER_PORT" --extend.query-path="$W/queries.yaml" \
    --log.level=warn >"$OUT/agent-exporter.log" 2>&1 &
EXPORTER_PID=$!
PIDS+=("$EXPORTER_PID")

scrape() { curl -sf -o "$W/scrape.txt" "http://127.0.0.1:$EXPORTER_PORT/metrics"; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
alive() { kill -0 "$AGENT_PID" 2>/dev/null && kill -0 "$EXPORTER_PID" 2>/dev/null \
    || { echo "the agent or the exporter exited (see $OUT/agent.log, agent-exporter.log)" >&2; exit 1; }; }

# Warm-up: both connect, the agent takes its baselines and sends every
# statement text once, the exporter is scraped on the same cadence.
START=$(date +%s)
sleep 2
while [ $(( $(date +%s) - START )) -lt "$WARMUP" ]; do
    scrape || true
    sleep "$INTERVAL"
done
alive
say "measuring for $WINDOW s"
A0=$(ticks "$AGENT_PID"); E0=$(ticks "$EXPORTER_PID")
T0=$(date +%s.%N)
SCRAPES=0; FAILED_SCRAPES=0
A_RSS_SUM=0; E_RSS_SUM=0; SAMPLES=0
END=$(( $(date +%s) + WINDOW ))
NEXT_SCRAPE=$(date +%s)
while [ "$(date +%s)" -lt "$END" ]; do
    if [ "$(date +%s)" -ge "$NEXT_SCRAPE" ]; then
        if scrape; then SCRAPES=$((SCRAPES + 1)); else FAILED_SCRAPES=$((FAILED_SCRAPES + 1)); fi
        NEXT_SCRAPE=$((NEXT_SCRAPE + INTERVAL))
    fi
    alive
    A_RSS_SUM=$((A_RSS_SUM + $(rss_kib "$AGENT_PID"))); E_RSS_SUM=$((E_RSS_SUM + $(rss_kib "$EXPORTER_PID")))
    SAMPLES=$((SAMPLES + 1))
    sleep 1
done
A1=$(ticks "$AGENT_PID"); E1=$(ticks "$EXPORTER_PID")
T1=$(date +%s.%N)
A_HWM=$(hwm_kib "$AGENT_PID"); E_HWM=$(hwm_kib "$EXPORTER_PID")
HZ=$(getconf CLK_TCK)
SECS=$(awk "BEGIN { print $T1 - $T0 }")
CYCLES=$(awk "BEGIN { print $SECS / $INTERVAL }")
SERIES=$(grep -c '^pg_' "$W/scrape.txt" || true)
STATEMENT_SERIES=$(grep -c '^pg_stat_statements_calls' "$W/scrape.txt" || true)
kill "$AGENT_PID" "$EXPORTER_PID" 2>/dev/null || true
wait "$AGENT_PID" 2>/dev/null || true
wait "$EXPORTER_PID" 2>/dev/null || true
[ "$SCRAPES" -gt 0 ] || { echo "no successful scrape of the exporter" >&2; exit 1; }

# The wire agent: the same configuration but the default family intervals
# (what a deployment sends), and an ingest that is never there (nothing
# listens on its port), so its spool keeps every batch it takes; the
# loadgen then measures them as the agent would send them.
sed -e "s|^state_dir = .*|state_dir = \"$W/wire-state\"|" -e "/^intervals = /d" \
    -e "s|^endpoint = .*|endpoint = \"https://127.0.0.1:$((INGEST_PORT + 12))\"|" "$W/agent.toml" >"$W/wire-agent.toml"
say "wire_bytes_per_sample_real_agent: the agent's batches of this cluster for $WIRE_SECS s"
LASECT_LOG=error "$BIN/lasect-agent" --config "$W/wire-agent.toml" >"$OUT/wire-agent.log" 2>&1 &
WIRE_PID=$!
PIDS+=("$WIRE_PID")
sleep "$WIRE_SECS"
kill -0 "$WIRE_PID" 2>/dev/null || { echo "the wire agent exited (see $OUT/wire-agent.log)" >&2; exit 1; }
kill "$WIRE_PID"; wait "$WIRE_PID" 2>/dev/null || true
"$BIN/lasect-loadgen" --wire-report-spool "$W/wire-state" >"$OUT/wire-real-agent.json"

# What the agent delivered: the store tables that got rows from it.
STORE_FAMILIES=$(psql -h "$STORE_SOCK" -p "$STORE_PORT" -U postgres -d lasect -qAt <<'SQL'
SELECT coalesce(string_agg(substr(relname, 8), ' ' ORDER BY relname), '')
FROM (
  SELECT c.relname,
         CASE WHEN EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'instance_id')
              THEN format('SELECT count(*) AS n FROM %I m JOIN instances i ON i.id = m.instance_id WHERE i.agent_id = %L', c.relname, 'bench-agent')
              WHEN EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'agent_id')
              THEN format('SELECT count(*) AS n FROM %I WHERE agent_id = %L', c.relname, 'bench-agent')
         END AS q
  FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
  WHERE s.nspname = 'public' AND c.relname LIKE 'metric\_%' AND c.relkind IN ('r', 'p')
    AND NOT c.relispartition
) t
WHERE q IS NOT NULL
  AND (xpath('/row/n/text()', query_to_xml(q, false, true, '')))[1]::text::int8 > 0
SQL
)

say "statement_cycle_ms: 5,000 entries with texts of 10 kB each"
"$BIN/examples/statement_cycle" --dsn "host=$SOCK port=$PG_PORT user=postgres dbname=bench" \
    --entries 5000 --pad-bytes 10300 --cycles 7 --touch 250 >"$OUT/statement_cycle.json"

jq -n \
  --slurpfile st "$OUT/statement_cycle.json" --slurpfile wire "$OUT/wire-real-agent.json" \
  --argjson a_hwm "$A_HWM" --argjson e_hwm "$E_HWM" \
  --argjson a_rss_sum "$A_RSS_SUM" --argjson e_rss_sum "$E_RSS_SUM" --argjson samples "$SAMPLES" \
  --argjson a0 "$A0" --argjson a1 "$A1" --argjson e0 "$E0" --argjson e1 "$E1" --argjson hz "$HZ" \
  --argjson secs "$SECS" --argjson cycles "$CYCLES" --argjson scrapes "$SCRAPES" \
  --argjson failed_scrapes "$FAILED_SCRAPES" --argjson distinct "$DISTINCT" --argjson tables "$TABLES" \
  --argjson series "$SERIES" --argjson statement_series "$STATEMENT_SERIES" \
  --arg families "$STORE_FAMILIES" --arg configured "$FAMILIES" '
  def r: (. * 1000 | round) / 1000;
  ($st[0]) as $s |
  (($a1 - $a0) * 1000 / $hz / $cycles) as $a_cpu |
  (($e1 - $e0) * 1000 / $hz / $scrapes) as $e_cpu |
  ($families | split(" ") | map(select(. != ""))) as $fams |
  {tables: $tables, distinct_statements: $distinct, interval_s: 10, window_s: ($secs | r),
   agent_families_configured: ($configured | split(" ")), agent_families_stored: $fams, exporter_series: $series, exporter_statement_series: $statement_series} as $setup |
  [
    ({name: "agent_rss_mib", unit: "MiB", lasect: ($a_hwm / 1024 | r),
     reference: ($e_hwm / 1024 | r), reference_name: "prometheus-postgres-exporter (Debian) peak RSS, same instance, scraped every 10 s",
     ratio: ($a_hwm / $e_hwm | r), better: "lower",
     lasect_mean_rss_mib: ($a_rss_sum / $samples / 1024 | r), reference_mean_rss_mib: ($e_rss_sum / $samples / 1024 | r),
     note: "peak RSS (VmHWM) over the whole run; the agent pushes every 10 s cycle through its spool and mTLS to the real ingest"} + $setup),
    ({name: "agent_cpu_ms_per_cycle", unit: "ms", lasect: ($a_cpu | r),
     reference: ($e_cpu | r), reference_name: "prometheus-postgres-exporter (Debian) CPU per scrape",
     ratio: ($a_cpu / $e_cpu | r), better: "lower",
     cycles: ($cycles | r), scrapes: $scrapes, failed_scrapes: $failed_scrapes,
     note: "utime+stime from /proc/<pid>/stat over the window; every agent family every 10 s, 1 s wait sampling included"} + $setup),
    {name: "statement_cycle_ms", unit: "ms", lasect: $s.lasect_ms, reference: $s.reference_ms,
     reference_name: "pg_stat_statements(true): the same counters plus every text, each cycle (as exporters read the view)",
     ratio: ($s.lasect_ms / $s.reference_ms | r), better: "lower",
     entries: $s.entries, text_bytes: $s.text_bytes, cycles: $s.cycles, touched_per_cycle: $s.touched_per_cycle,
     first_sight_ms: $s.first_sight_ms, first_sight_texts: $s.first_sight_texts, catch_up_rounds: $s.catch_up_rounds,
     steady_text_fetches: $s.steady_text_fetches,
     note: "median over steady cycles, agent and reference alternating on one server"},
    ($wire[0]) as $w |
    {name: "wire_bytes_per_sample_real_agent", unit: "bytes/sample", lasect: ($w.wire_bytes_per_sample | r),
     reference: ($w.json_gzip_bytes_per_sample | r), reference_name: "JSON + gzip of the same samples",
     ratio: ($w.wire_bytes_per_sample / $w.json_gzip_bytes_per_sample | r), better: "lower",
     target_ratio: 0.333, batches: $w.batches, samples: $w.samples,
     steady_ratio: (if $w.steady_wire_bytes_per_sample then ($w.steady_wire_bytes_per_sample / $w.steady_json_gzip_bytes_per_sample | r) else null end),
     whole_ratio: ($w.whole_bytes_per_sample / $w.json_gzip_bytes_per_sample | r),
     delta_no_dictionary_ratio: ($w.delta_no_dictionary_bytes_per_sample / $w.json_gzip_bytes_per_sample | r),
     note: "the real agent on this cluster at its default family intervals; steady_ratio leaves out the first batch (no base yet: every setting and statement text, sent whole), which an hour of pushes pays once"}
  ]' >"$OUT/agent_summary.json"
