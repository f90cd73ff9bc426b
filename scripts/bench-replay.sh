#!/usr/bin/env bash
# Replay throughput: generates N events (default 200,000; a realistic mix of all three
# input shapes) and replays the same file into fresh databases, batched and with one
# transaction per event, in the same run. Postgres runs with its default durability
# (synchronous_commit on).
#
#   scripts/bench-replay.sh [EVENTS] [BATCH_SIZE] [WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-200000}
batch=${2:-500}
workers=${3:-2}

. scripts/bench-common.sh
file=$(sample_events "$events")
echo "workers: $workers concurrent transactions in both runs"

run() {
  local size=$1 url
  url=$(fresh_db "kcs_bench_batch_$size")
  KEYCLOAK_SYNC__DATABASE__URL=$url KEYCLOAK_SYNC__LOG__LEVEL=warn \
    "$bin" migrate
  KEYCLOAK_SYNC__DATABASE__URL=$url KEYCLOAK_SYNC__LOG__LEVEL=warn \
    "$bin" replay "$file" --batch-size "$size" --workers "$workers" --no-migrate 2>/dev/null | grep '^replay summary'
}

machine
echo "input:   $file ($(wc -l <"$file") events, $(du -h "$file" | cut -f1))"
batched=$(run "$batch")
single=$(run 1)
rate() { sed -E 's/.*, ([0-9]+) events\/s\)$/\1/' <<<"$1"; }
printf '%-22s %s\n' "batch $batch:" "$batched" "batch 1:" "$single"
awk -v a="$(rate "$batched")" -v b="$(rate "$single")" \
  'BEGIN { printf "speed-up: %.1fx (%d vs %d events/s)\n", a / b, a, b }'
