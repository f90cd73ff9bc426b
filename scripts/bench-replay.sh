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

scripts/services.sh up >/dev/null 2>&1
eval "$(scripts/services.sh env)"
cargo build --release --locked --quiet
bin=$PWD/target/release/keycloak-sync
work=.local/bench
mkdir -p "$work"
file="$work/events-$events.jsonl"
[ -s "$file" ] || "$bin" sample --events "$events" --users $((events / 40)) --seed 42 >"$file"
echo "workers: $workers concurrent transactions in both runs"

fresh_db() {
  psql "$KCS_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1
  psql "$KCS_TEST_DATABASE_URL" -qc "CREATE DATABASE $1" >/dev/null
  echo "${KCS_TEST_DATABASE_URL%/*}/$1"
}

run() {
  local size=$1 url
  url=$(fresh_db "kcs_bench_batch_$size")
  KEYCLOAK_SYNC__DATABASE__URL=$url KEYCLOAK_SYNC__LOG__LEVEL=warn \
    "$bin" migrate
  KEYCLOAK_SYNC__DATABASE__URL=$url KEYCLOAK_SYNC__LOG__LEVEL=warn \
    "$bin" replay "$file" --batch-size "$size" --workers "$workers" --no-migrate 2>/dev/null | grep '^replay summary'
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(psql "$KCS_TEST_DATABASE_URL" -tAc 'SHOW server_version') Postgres"
echo "input:   $file ($(wc -l <"$file") events, $(du -h "$file" | cut -f1))"
batched=$(run "$batch")
single=$(run 1)
rate() { sed -E 's/.*, ([0-9]+) events\/s\)$/\1/' <<<"$1"; }
printf '%-22s %s\n' "batch $batch:" "$batched" "batch 1:" "$single"
awk -v a="$(rate "$batched")" -v b="$(rate "$single")" \
  'BEGIN { printf "speed-up: %.1fx (%d vs %d events/s)\n", a / b, a, b }'
