#!/usr/bin/env bash
# `make bench`: the ingest benchmarks of issue 4, on this machine, against a
# real store (a private PostgreSQL cluster with default durability: fsync and
# synchronous_commit on) and the release binaries. Writes
# target/bench/summary.json, an array of
#   {name, unit, lasect, reference, reference_name, ratio, better, ...extra}
# and prints it as a table. Figures:
#   wire_bytes_per_sample   batches as agents send them (delta pushes against the batches
#                           ingest kept, zstd + dictionary) vs JSON+gzip of the same
#                           samples (lower is better); whole batches reported beside it
#   ingest_rows_per_s       loadgen backlog through mTLS gRPC + ingest into the store,
#                           vs psql \copy of the same rows (CSV) into the same tables
#                           (medians of 3 alternating rounds, LASECT_BENCH_TPUT_ROUNDS)
#   replay_rows_per_s       one agent draining one hour of 10 s batches, vs the real-time rate
#   fleet_agents_p99_250ms  most agents at a 10 s interval served with push p99 < 250 ms
#                           (each sends delta pushes, as the real agent does)
#   alert_round_ms, alert_round_store_cpu_ms   bench/alerts.sh (also with QUICK; alone with
#                           LASECT_BENCH_ALERTS_ONLY=1)
#   agent_rss_mib, agent_cpu_ms_per_cycle, statement_cycle_ms   bench/agent.sh
#   backup_mb_per_s         a full backup through the agent vs pgbackrest by hand (bench/backup.sh)
#   console_first_page_kb, console_fleet_drawn_ms, console_30d_chart_ms   bench/console.sh
#                           (alone with LASECT_BENCH_CONSOLE_ONLY=1)
# Everything runs under a temp dir that is removed at the end; logs and the
# raw loadgen outputs are kept in target/bench/.
# LASECT_BENCH_QUICK=1 (`make bench-quick`) measures only wire_bytes_per_sample
# and ingest_rows_per_s (about two minutes), for iterating on the ingest path.
# Of the caller's LASECT_* variables only the LASECT_BENCH_* knobs below count
# (scripts/hermetic.sh); `bench/run.sh --print-env` shows what is left and exits.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. "$ROOT/scripts/hermetic.sh"
lasect_hermetic_env LASECT_BENCH_
if [ "${1:-}" = --print-env ]; then
    env | grep '^LASECT_' || true
    exit 0
fi
OUT="$ROOT/target/bench"
FLEET_STEPS=${LASECT_BENCH_FLEET_STEPS:-"500 1000 2000 5000 8000"}
FLEET_SECS=${LASECT_BENCH_FLEET_SECS:-50}
# The first two intervals, while the fleet connects (a TLS handshake storm:
# every agent connects at a random moment of the first interval, and under
# that load the last handshakes end well into the second), are not
# measured; the 30 s after them are steady state. Pushes refused during the
# warm-up are reported beside the figure (`warmup_failed`).
FLEET_WARMUP=${LASECT_BENCH_FLEET_WARMUP:-20}
TPUT_AGENTS=${LASECT_BENCH_TPUT_AGENTS:-100}
TPUT_BATCHES=${LASECT_BENCH_TPUT_BATCHES:-100}
TPUT_ROUNDS=${LASECT_BENCH_TPUT_ROUNDS:-3}
# Batches as the real agent sends them (`agent`) or only database + host (`database`).
TPUT_SHAPE=${LASECT_BENCH_TPUT_SHAPE:-agent}
QUICK=${LASECT_BENCH_QUICK:-0}
# LASECT_BENCH_FLEET_ONLY=1: only the fleet steps (for iterating on them);
# LASECT_BENCH_FLEET_ARGS: more loadgen arguments for them (e.g. --whole).
FLEET_ONLY=${LASECT_BENCH_FLEET_ONLY:-0}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v jq >/dev/null 2>&1; then
    say "installing jq (summary assembly)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jq >/dev/null \
        || { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jq >/dev/null; }
fi

if [ "${LASECT_BENCH_SKIP_BUILD:-0}" = 1 ]; then
    say "using the release binaries as built (LASECT_BENCH_SKIP_BUILD=1)"
else
    say "building release binaries"
    cargo build --release --bins --quiet
fi
BIN="$ROOT/target/release"
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log

# Thousands of simulated agents hold a connection each, on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d)  # honours $TMPDIR
chmod 711 "$WORK"
PGDATA="$WORK/pg"
SOCK="$WORK/sock"
PG_PORT=$((20000 + RANDOM % 20000))
PGBIN=$( (command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] && pg_config --bindir) \
         || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" -eq 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
    PGOWNER=postgres
else
    as_pg() { "$@"; }
    PGOWNER=$(id -un)
fi

INGEST_PID=""
cleanup() {
    [ -n "$INGEST_PID" ] && kill "$INGEST_PID" 2>/dev/null && wait "$INGEST_PID" 2>/dev/null || true
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" stop -m fast >/dev/null 2>&1 || true
    cp "$WORK/pglog/postgresql.log" "$OUT/postgresql.log" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting the store (PostgreSQL, fsync on) under $WORK"
mkdir -p "$PGDATA" "$SOCK" "$WORK/pglog"
chown "$PGOWNER" "$PGDATA" "$SOCK" "$WORK/pglog"
as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C >"$OUT/initdb.log"
cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PG_PORT
unix_socket_directories = '$SOCK'
shared_buffers = 256MB
max_connections = 100
CONF
# The server writes its log as its own OS user, so into the temp dir.
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/pglog/postgresql.log" -w -t 60 start >/dev/null
psql_store() { psql -h "$SOCK" -p "$PG_PORT" -U postgres -d lasect -v ON_ERROR_STOP=1 -qAt "$@"; }
psql -h "$SOCK" -p "$PG_PORT" -U postgres -d postgres -qAt -c "CREATE DATABASE lasect" >/dev/null
STORE_DSN="host=$SOCK port=$PG_PORT user=postgres dbname=lasect application_name=lasect-ingest"
"$BIN/lasect-api" migrate --store-dsn "$STORE_DSN" >"$OUT/migrate.log" 2>&1
"$BIN/lasect-api" ca init --dir "$WORK/tls" >"$OUT/ca.log" 2>&1

INGEST_PORT=$((PG_PORT + 1))
cat > "$WORK/ingest.toml" <<TOML
listen = "127.0.0.1:$INGEST_PORT"
store_dsn = "$STORE_DSN"
[tls]
ca_file = "$WORK/tls/ca.pem"
cert_file = "$WORK/tls/ingest.pem"
key_file = "$WORK/tls/ingest.key"
TOML
say "starting lasect-ingest (default limits) on 127.0.0.1:$INGEST_PORT"
LASECT_LOG=${LASECT_BENCH_INGEST_LOG:-warn} "$BIN/lasect-ingest" --config "$WORK/ingest.toml" >"$OUT/ingest.log" 2>&1 &
INGEST_PID=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$INGEST_PORT") 2>/dev/null && break
    sleep 0.2
done

# CPU seconds (user + system) a process has used so far.
cpu_secs() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}
# CPU seconds the store has used so far: the postmaster with its reaped
# children, plus its live children (the pool's backends).
store_cpu_secs() {
    local pm
    pm=$(head -1 "$PGDATA/postmaster.pid")
    {
        awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat"
        for c in $(pgrep -P "$pm"); do awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || true; done
    } | awk -v hz="$(getconf CLK_TCK)" '{ s += $1 } END { print s / hz }'
}
# CPU seconds the whole machine has been busy so far (all cores).
machine_busy_secs() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { print ($2 + $3 + $4 + $7 + $8) / hz }' /proc/stat
}

loadgen() {
    local name=$1; shift
    "$BIN/lasect-loadgen" --endpoint "https://127.0.0.1:$INGEST_PORT" --ca-dir "$WORK/tls" "$@" \
        >"$OUT/$name.json" 2>>"$OUT/loadgen.log"
}
num() { jq -r "$2" "$OUT/$1.json"; }

# LASECT_BENCH_ALERTS_ONLY=1: only the alert evaluation (bench/alerts.sh), 100 instances with
# LASECT_BENCH_QUICK=1 (about a minute with the release binaries built).
if [ "${LASECT_BENCH_ALERTS_ONLY:-0}" = 1 ]; then
    bench/alerts.sh "$WORK" "$INGEST_PORT" "$WORK/tls" "$STORE_DSN" "$QUICK"
    cp "$OUT/alerts_summary.json" "$OUT/summary.json"
    jq . "$OUT/summary.json"
    exit 0
fi

# LASECT_BENCH_CONSOLE_ONLY=1: only the console's budget (bench/console.sh): 30 days of one
# agent, the first page and the drawn charts (a few minutes with the release binaries built).
if [ "${LASECT_BENCH_CONSOLE_ONLY:-0}" = 1 ]; then
    bench/console.sh "$WORK" "$INGEST_PORT" "$WORK/tls" "$STORE_DSN"
    cp "$OUT/console_summary.json" "$OUT/summary.json"
    jq . "$OUT/summary.json"
    exit 0
fi

if [ "$FLEET_ONLY" != 1 ]; then
# 1. Wire size: one agent's hour of batches, both encodings.
say "wire_bytes_per_sample"
"$BIN/lasect-loadgen" --wire-report 360 --shape agent >"$OUT/wire.json"
"$BIN/lasect-loadgen" --wire-report 360 --shape database >"$OUT/wire-database.json"

# 2. Throughput: a backlog from many agents, then the same rows by \copy,
#    in TPUT_ROUNDS alternating rounds; the figures are the medians. Both
#    sides start each round from the same state (a CHECKPOINT, and a VACUUM
#    ANALYZE so that autovacuum of the previous round's rows does not land
#    in one side's measurement): one run of each on a shared 2-core machine
#    varied by ±25 %.
# 100 agents draining a backlog with the agent's window of 4 keep 400 pushes
# in flight, under ingest's default admission bound (1024), so this measures
# writing rather than refusals and retries. What is in flight bounds the
# groups the writers commit: with 64, groups could not grow past ~30
# batches; with 192 (under the former bound of 256) they averaged ~5,400
# rows, and each group's fixed cost (a COPY per table, the commit: ~20 ms)
# was nearly half of its time; with 400 the figure rose by about 15 %.
# CPU is accounted per side so the loadgen's own share (it runs on the
# same 2 cores) is visible next to the figure.
TABLES=$(psql_store -c "SELECT f.table_name || ' ' || CASE WHEN EXISTS (
    SELECT 1 FROM information_schema.columns c
    WHERE c.table_name = f.table_name AND c.column_name = 'instance_id') THEN 'instance' ELSE 'agent' END
    FROM metric_families f ORDER BY 1")
settle() { psql_store -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null; }
ROUNDS="[]"
for round in $(seq 1 "$TPUT_ROUNDS"); do
    say "ingest_rows_per_s round $round/$TPUT_ROUNDS: $TPUT_AGENTS agents x $TPUT_BATCHES batches, then \\copy"
    prefix="tput$round"
    settle
    INGEST_CPU0=$(cpu_secs "$INGEST_PID"); BUSY0=$(machine_busy_secs); STORE_CPU0=$(store_cpu_secs)
    TIMEFORMAT='%U %S'
    { time loadgen "tput-$round" --agent-prefix "$prefix" --agents "$TPUT_AGENTS" --batches-per-agent "$TPUT_BATCHES" \
        --window 4 --shape "$TPUT_SHAPE" 2>/dev/null; } 2>"$WORK/loadgen-time"
    INGEST_CPU=$(awk "BEGIN { print $(cpu_secs "$INGEST_PID") - $INGEST_CPU0 }")
    BUSY=$(awk "BEGIN { print $(machine_busy_secs) - $BUSY0 }")
    STORE_CPU=$(awk "BEGIN { print $(store_cpu_secs) - $STORE_CPU0 }")
    LOADGEN_CPU=$(awk '{ print $1 + $2 }' "$WORK/loadgen-time")
    # Every metric table the round wrote to, keyed by instance or by agent.
    COPY_SQL="$WORK/copy.sql"
    : >"$COPY_SQL"
    rm -f "$WORK"/metric_*.csv
    while read -r table key; do
        if [ "$key" = instance ]; then
            sel="SELECT t.* FROM $table t JOIN instances i ON i.id = t.instance_id WHERE i.agent_id LIKE '$prefix-%'"
        else
            sel="SELECT * FROM $table WHERE agent_id LIKE '$prefix-%'"
        fi
        psql_store -c "\\copy ($sel) TO '$WORK/$table.csv' CSV"
        [ -s "$WORK/$table.csv" ] && echo "\\copy $table FROM '$WORK/$table.csv' CSV" >>"$COPY_SQL"
    done <<<"$TABLES"
    COPY_ROWS=$(cat "$WORK"/metric_*.csv | wc -l)
    settle
    T0=$(date +%s.%N); COPY_STORE_CPU0=$(store_cpu_secs)
    psql_store -f "$COPY_SQL"
    T1=$(date +%s.%N)
    # psql's backend has exited: its CPU counts once the postmaster reaped it.
    sleep 1
    COPY_STORE_CPU=$(awk "BEGIN { print $(store_cpu_secs) - $COPY_STORE_CPU0 }")
    COPY_SECS=$(awk "BEGIN { print $T1 - $T0 }")
    ROUNDS=$(jq -c --slurpfile t "$OUT/tput-$round.json" \
        --argjson copy_rows "$COPY_ROWS" --argjson copy_secs "$COPY_SECS" \
        --argjson ingest_cpu "$INGEST_CPU" --argjson loadgen_cpu "$LOADGEN_CPU" --argjson busy "$BUSY" \
        --argjson store_cpu "$STORE_CPU" --argjson copy_store_cpu "$COPY_STORE_CPU" '
        def r: (. * 1000 | round) / 1000;
        ($t[0]) as $t | . + [{
          rows_per_s: ($t.rows_per_s | r), copy_rows_per_s: ($copy_rows / $copy_secs | r),
          ratio: ($t.rows_per_s / ($copy_rows / $copy_secs) | r),
          shape: $t.shape, rows: $t.rows, rows_per_batch: ($t.rows_per_batch | r), agents: $t.agents,
          elapsed_s: ($t.elapsed_s | r), push_p99_ms: $t.latency_ms.p99,
          retries: $t.failed_total, copy_rows: $copy_rows, copy_s: ($copy_secs | r),
          ingest_cpu_s: ($ingest_cpu | r), loadgen_cpu_s: ($loadgen_cpu | r),
          loadgen_push_cpu_s: ($t.push_cpu_s // null | if . then r else . end), machine_busy_s: ($busy | r),
          store_cpu_s: ($store_cpu | r), copy_store_cpu_s: ($copy_store_cpu | r)}]' <<<"$ROUNDS")
    jq -c '.[-1] | {rows_per_s, copy_rows_per_s, ratio}' <<<"$ROUNDS" >&2
done
echo "$ROUNDS" >"$OUT/tput-rounds.json"

# The two figures every mode reports.
jq -n --slurpfile wire "$OUT/wire.json" --slurpfile wiredb "$OUT/wire-database.json" \
  --slurpfile rounds "$OUT/tput-rounds.json" '
  def r: (. * 1000 | round) / 1000;
  def median: sort | .[(length - 1) / 2 | floor];
  ($wire[0]) as $w | ($wiredb[0]) as $d | ($rounds[0]) as $rs |
  ($rs | map(.rows_per_s) | median) as $ours | ($rs | map(.copy_rows_per_s) | median) as $copy |
  [
    {name: "ingest_rows_per_s", unit: "rows/s", lasect: $ours,
     reference: $copy, reference_name: "psql \\copy of the same rows (CSV) into the same store",
     ratio: ($ours / $copy | r), better: "higher", target_ratio: 0.8,
     method: "median of each side over alternating rounds",
     round_ratios: ($rs | map(.ratio)), rounds: $rs},
    {name: "wire_bytes_per_sample", unit: "bytes/sample", lasect: ($w.wire_bytes_per_sample | r),
     reference: ($w.json_gzip_bytes_per_sample | r), reference_name: "JSON + gzip of the same samples",
     ratio: ($w.wire_bytes_per_sample / $w.json_gzip_bytes_per_sample | r), better: "lower",
     target_ratio: 0.333, codec: "delta pushes, zstd + dictionary (CODEC_ZSTD_DICT_V3)",
     shape: $w.shape, samples: $w.samples, batches: $w.batches,
     whole_ratio: ($w.whole_bytes_per_sample / $w.json_gzip_bytes_per_sample | r),
     delta_no_dictionary_ratio: ($w.delta_no_dictionary_bytes_per_sample / $w.json_gzip_bytes_per_sample | r),
     delta_v2_dictionary_ratio: ($w.delta_v2_dictionary_bytes_per_sample / $w.json_gzip_bytes_per_sample | r),
     lz4_ratio: ($w.lz4_protobuf_bytes_per_sample / $w.json_gzip_bytes_per_sample | r),
     zstd_no_dictionary_ratio: ($w.zstd_no_dictionary_bytes_per_sample / $w.json_gzip_bytes_per_sample | r),
     database_shape: {lasect: ($d.wire_bytes_per_sample | r), reference: ($d.json_gzip_bytes_per_sample | r),
                      ratio: ($d.wire_bytes_per_sample / $d.json_gzip_bytes_per_sample | r),
                      whole_ratio: ($d.whole_bytes_per_sample / $d.json_gzip_bytes_per_sample | r),
                      lz4_ratio: ($d.lz4_protobuf_bytes_per_sample / $d.json_gzip_bytes_per_sample | r)}}
  ]' >"$OUT/core.json"
# 2b. Alert evaluation (issue 18): a round of the default pack + 50 rules over 1,000 instances
#     (100 with QUICK) vs the same conditions one statement at a time (bench/alerts.sh).
bench/alerts.sh "$WORK" "$INGEST_PORT" "$WORK/tls" "$STORE_DSN" "$QUICK"
jq -s '.[0] + .[1]' "$OUT/core.json" "$OUT/alerts_summary.json" >"$OUT/core.tmp"
mv "$OUT/core.tmp" "$OUT/core.json"
if [ "$QUICK" = 1 ]; then
    cp "$OUT/core.json" "$OUT/summary.json"
    jq . "$OUT/summary.json"
    exit 0
fi

# 3. Replay: one agent's hour (360 batches at 10 s) as fast as it drains,
#    with the agent's default window of 4 pushes in flight.
say "replay_rows_per_s: 360 batches of one agent"
loadgen replay --agent-prefix replay --agents 1 --batches-per-agent 360 --window 4

fi

# 4. Fleet: step the number of agents up until p99 >= 250 ms or pushes fail.
BEST=0; BEST_P50=null; BEST_P99=null; STEPS="[]"
for n in $FLEET_STEPS; do
    say "fleet: $n agents at a 10 s interval for $FLEET_SECS s ($FLEET_WARMUP s warm-up)"
    # The disk's own fsync latency meanwhile, on the store's file system:
    # a push is acknowledged after its commit is durable, so a stalled
    # fsync is a slow push whatever ingest does.
    "$BIN/lasect-loadgen" --fsync-probe "$WORK" --duration-secs "$FLEET_SECS" >"$OUT/fsync-$n.json" &
    PROBE_PID=$!
    loadgen "fleet-$n" --agent-prefix "fleet$n" --agents "$n" --interval-ms 10000 \
        --duration-secs "$FLEET_SECS" --warmup-secs "$FLEET_WARMUP" ${LASECT_BENCH_FLEET_ARGS:-}
    wait "$PROBE_PID" || echo '{}' >"$OUT/fsync-$n.json"
    p50=$(num "fleet-$n" .latency_ms.p50); p99=$(num "fleet-$n" .latency_ms.p99)
    ok=$(num "fleet-$n" .batches_ok); failed=$(num "fleet-$n" .failed_total)
    warm_failed=$(num "fleet-$n" .warmup_failed)
    STEPS=$(jq -c --argjson n "$n" --argjson p50 "$p50" --argjson p99 "$p99" --argjson ok "$ok" --argjson failed "$failed" \
        --argjson warm_failed "$warm_failed" --slurpfile fsync "$OUT/fsync-$n.json" \
        '. + [{agents: $n, p50_ms: $p50, p99_ms: $p99, batches_ok: $ok, failed: $failed, warmup_failed: $warm_failed,
               disk_fsync_ms: ($fsync[0] | {p50: .p50_ms, p99: .p99_ms, max: .max_ms, over_50ms})}]' <<<"$STEPS")
    if jq -e --argjson p99 "$p99" --argjson ok "$ok" --argjson failed "$failed" -n \
        '$p99 < 250 and $ok > 0 and $failed <= ($ok / 1000)' >/dev/null; then
        BEST=$n; BEST_P50=$p50; BEST_P99=$p99
    else
        break
    fi
done

if [ "$FLEET_ONLY" = 1 ]; then
    jq . <<<"$STEPS"
    exit 0
fi

jq -n \
  --slurpfile core "$OUT/core.json" \
  --slurpfile replay "$OUT/replay.json" \
  --argjson best "$BEST" --argjson best_p50 "$BEST_P50" --argjson best_p99 "$BEST_P99" \
  --argjson steps "$STEPS" '
  def r: (. * 1000 | round) / 1000;
  ($replay[0]) as $p |
  ($p.rows_per_batch / 10) as $realtime |
  $core[0] + [
    {name: "fleet_agents_p99_250ms", unit: "agents", lasect: $best,
     reference: 5000, reference_name: "target of issue 4", ratio: ($best / 5000 | r), better: "higher",
     p50_ms: $best_p50, p99_ms: $best_p99, interval_s: 10, steps: $steps,
     note: "ingest, store, loadgen (all agents) and PostgreSQL share this machine"},
    {name: "replay_rows_per_s", unit: "rows/s", lasect: ($p.rows_per_s | r),
     reference: $realtime, reference_name: "real-time rate of one agent (rows per batch / 10 s)",
     ratio: ($p.rows_per_s / $realtime | r), better: "higher",
     target_ratio: 100, batches: $p.batches_ok, elapsed_s: ($p.elapsed_s | r), retries: $p.failed_total}
  ]' >"$OUT/summary.json"

# 5. The agent against prometheus-postgres-exporter, and the statement cycle (issue 3).
bench/agent.sh "$WORK" "$INGEST_PORT" "$WORK/tls" "$SOCK" "$PG_PORT"
jq -s '.[0] + .[1]' "$OUT/summary.json" "$OUT/agent_summary.json" >"$OUT/summary.tmp"
mv "$OUT/summary.tmp" "$OUT/summary.json"

# 5b. Backups (issue 17): full backups through the agent vs pgBackRest by hand, on a cluster
#     of their own (bench/backup.sh).
bench/backup.sh "$WORK"
jq -s '.[0] + .[1]' "$OUT/summary.json" "$OUT/backup_summary.json" >"$OUT/summary.tmp"
mv "$OUT/summary.tmp" "$OUT/summary.json"

# 6. The console's performance budget (issue 19): 30 days of samples, the first page's size,
#    the fleet and a 30-day chart drawn in the browser. Over budget fails the bench, after
#    the summary is written.
CONSOLE_STATUS=0
bench/console.sh "$WORK" "$INGEST_PORT" "$WORK/tls" "$STORE_DSN" || CONSOLE_STATUS=$?
if [ -s "$OUT/console_summary.json" ]; then
    jq -s '.[0] + .[1]' "$OUT/summary.json" "$OUT/console_summary.json" >"$OUT/summary.tmp"
    mv "$OUT/summary.tmp" "$OUT/summary.json"
fi

say "summary ($OUT/summary.json)"
jq -r '(["name","unit","lasect","reference","ratio","better"] | @tsv),
       (.[] | [.name, .unit, (.lasect|tostring), (.reference|tostring), (.ratio|tostring), .better] | @tsv)' \
    "$OUT/summary.json" | if command -v column >/dev/null; then column -t -s $'\t'; else cat; fi
if [ "$CONSOLE_STATUS" -ne 0 ]; then
    say "the console benchmark failed (exit $CONSOLE_STATUS): over budget or broken, see above"
    exit "$CONSOLE_STATUS"
fi
