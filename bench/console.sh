#!/usr/bin/env bash
# The console's performance budget (issue 19), run by bench/run.sh (`make bench`) with the
# release binaries and the store + lasect-ingest it started:
#   bench/console.sh WORK_DIR INGEST_PORT TLS_DIR STORE_DSN
# Loads 30 days of one loadgen agent's samples (a batch every 5 minutes, every family of the
# real agent), starts lasect-api on that store and measures in Debian's chromium
# (console/tests/budget.mjs). Writes target/bench/console_summary.json (summary format):
#   console_first_page_kb   gzip bytes of the first page (index.html, its scripts and styles)
#                           vs the budget of 300 KB; over it the bench fails
#   console_fleet_drawn_ms  navigation to a drawn fleet table vs GET /api/v1/instances alone
#   console_30d_chart_ms    "30 d" chosen to the drawn 30-day chart vs its series call alone
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$1; INGEST_PORT=$2; TLS=$3; STORE_DSN=$4
BIN=${LASECT_BENCH_BIN:-$ROOT/target/release}
OUT="$ROOT/target/bench"
DAYS=${LASECT_BENCH_CONSOLE_DAYS:-30}
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

CHROMIUM=${LASECT_CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || { echo "$CHROMIUM missing: run scripts/deps.sh --test" >&2; exit 1; }
[ -f "$ROOT/console/node_modules/playwright-core/package.json" ] \
    || (cd "$ROOT/console" && npm ci --no-audit --no-fund --loglevel=error)

# The store keeps 14 days by default (and each start of lasect-api drops older partitions):
# keep the whole range, so the chart is drawn over 30 days of data, not the newest 14.
psql "$STORE_DSN" -v ON_ERROR_STOP=1 -qAt \
    -c "UPDATE metric_families SET retention = interval '$((DAYS + 1)) days'" >/dev/null

say "console: $DAYS days of one agent's samples (a batch every 5 min)"
"$BIN/lasect-loadgen" --endpoint "https://127.0.0.1:$INGEST_PORT" --ca-dir "$TLS" \
    --agents 1 --agent-prefix console --batches-per-agent $((DAYS * 288)) --interval-ms 300000 \
    --window 4 --shape agent >"$OUT/console-load.json" 2>>"$OUT/loadgen.log"

API_PORT=$((INGEST_PORT + 7))
mkdir -p "$WORK/console"
cat > "$WORK/console/api.toml" <<TOML
listen = "127.0.0.1:$API_PORT"
store_dsn = "${STORE_DSN/lasect-ingest/lasect-api}"
[tls]
cert_file = "$TLS/api.pem"
key_file = "$TLS/api.key"
[auth]
initial_password_file = "$WORK/console/admin-password"
TOML
LASECT_LOG=warn "$BIN/lasect-api" serve --config "$WORK/console/api.toml" >"$OUT/console-api.log" 2>&1 &
API_PID=$!
trap 'kill "$API_PID" 2>/dev/null; wait "$API_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -sf --cacert "$TLS/ca.pem" "https://127.0.0.1:$API_PORT/api/v1/health" >/dev/null 2>&1 && break
    sleep 0.2
done
TOKEN=$("$BIN/lasect-api" admin token --store-dsn "$STORE_DSN" --username admin --name "console bench")

say "console: first page size, fleet and 30-day chart in the browser"
status=0
(cd "$ROOT/console" && CONSOLE_URL="https://127.0.0.1:$API_PORT" CA_FILE="$TLS/ca.pem" \
    ADMIN_PASSWORD="$(cat "$WORK/console/admin-password")" API_TOKEN="$TOKEN" AGENT=console-0 \
    CHROMIUM="$CHROMIUM" OUT="$OUT/console.json" node tests/budget.mjs >/dev/null) || status=$?

jq '
  def r: (. * 1000 | round) / 1000;
  [
    {name: "console_first_page_kb", unit: "KiB (gzip)", lasect: (.first_page_gzip_bytes / 1024 | r),
     reference: (.budget_bytes / 1024), reference_name: "budget of issue 19", ratio: (.first_page_gzip_bytes / .budget_bytes | r),
     better: "lower", files: .first_page_files},
    {name: "console_fleet_drawn_ms", unit: "ms", lasect: .fleet_drawn_ms,
     reference: .fleet_api_ms, reference_name: "GET /api/v1/instances alone",
     ratio: (.fleet_drawn_ms / .fleet_api_ms | r), better: "lower", rounds: .rounds,
     note: "from navigation (app load, session refresh, list) to the first row drawn"},
    {name: "console_30d_chart_ms", unit: "ms", lasect: .chart_drawn_ms,
     reference: .chart_api_ms, reference_name: "GET …/metrics/database over the same 30 days alone",
     ratio: (.chart_drawn_ms / .chart_api_ms | r), better: "lower", rounds: .rounds,
     points: .chart_points, step_s: .chart_step_s}
  ]' "$OUT/console.json" >"$OUT/console_summary.json"
exit "$status"
