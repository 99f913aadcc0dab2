#!/usr/bin/env bash
# The alert evaluation benchmark (issue 18), run by bench/run.sh (`make bench`) on the store and
# lasect-ingest it started:
#   bench/alerts.sh WORK_DIR INGEST_PORT TLS_DIR STORE_DSN QUICK
# Loads five minutes of samples (10 s batches, every family of the real agent) of 1,000
# simulated instances (100 with QUICK=1) through ingest, then runs api/examples/alert_bench.rs:
# one evaluation round of the default pack plus 50 threshold rules over every instance (median
# of three), against the same conditions as one SQL statement per rule and instance run one by
# one (the reference: over LASECT_BENCH_ALERT_REF_INSTANCES instances, default 100, scaled to
# all). Writes target/bench/alerts_summary.json (summary format):
#   alert_round_ms            wall time of a round vs the reference (lower is better);
#                             interval_share: the round's share of the 15 s interval
#   alert_round_store_cpu_ms  CPU of the store backend that ran it vs the reference's
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$1; INGEST_PORT=$2; TLS=$3; STORE_DSN=$4; QUICK=${5:-0}
BIN="$ROOT/target/release"
OUT="$ROOT/target/bench"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

INSTANCES=1000
[ "$QUICK" = 1 ] && INSTANCES=100
REF=${LASECT_BENCH_ALERT_REF_INSTANCES:-100}
[ "$REF" -gt "$INSTANCES" ] && REF=$INSTANCES

if [ "${LASECT_BENCH_SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --quiet -p lasect-api --example alert_bench
fi

say "alerts: five minutes of samples of $INSTANCES instances"
"$BIN/lasect-loadgen" --endpoint "https://127.0.0.1:$INGEST_PORT" --ca-dir "$TLS" \
    --agents "$INSTANCES" --agent-prefix alerts --batches-per-agent 30 --interval-ms 10000 \
    --window 4 --shape agent >"$OUT/alerts-load.json" 2>>"$OUT/loadgen.log"

say "alerts: one evaluation round vs one statement per rule and instance ($REF instances measured)"
"$BIN/examples/alert_bench" "${STORE_DSN/lasect-ingest/lasect-alert-bench}" "$REF" >"$OUT/alerts.json"

jq '[
  {name: "alert_round_ms", unit: "ms",
   lasect: (.round_s * 1000 | round), reference: (.reference_s * 1000 | round),
   reference_name: "the same conditions, one SQL statement per rule and instance, run one by one",
   ratio: (.round_s / .reference_s * 1000 | round / 1000), better: "lower",
   interval_share: (.round_s / 15 * 1000 | round / 1000),
   instances, rules, rule_errors, reference_instances, reference_statements},
  {name: "alert_round_store_cpu_ms", unit: "ms",
   lasect: (.round_store_cpu_s * 1000 | round), reference: (.reference_store_cpu_s * 1000 | round),
   reference_name: "CPU of the store backend running the reference",
   ratio: (if .reference_store_cpu_s > 0 then (.round_store_cpu_s / .reference_store_cpu_s * 1000 | round / 1000) else null end),
   better: "lower", instances, rules}
]' "$OUT/alerts.json" >"$OUT/alerts_summary.json"
