#!/usr/bin/env bash
# Daemon benchmarks on the local RabbitMQ and Postgres (all on this machine):
#   throughput  pre-load the queue with N persistent events, start the daemon, time until
#               all are applied; side by side with prefetch 1 / batch 1 (on SLOW_N events)
#   latency     a steady 1,000 events/s for 30 s; commit time minus publish time
#   memory      peak RSS during the throughput run, and RSS while draining a queue
#               holding MEMORY_N messages
#
#   scripts/bench-daemon.sh [N=200000] [SLOW_N=20000] [MEMORY_N=1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-200000}
slow_events=${2:-20000}
memory_events=${3:-1000000}
parts=${KCS_BENCH_PARTS:-throughput latency memory}  # any subset, e.g. KCS_BENCH_PARTS=memory

. scripts/bench-common.sh
node=$KCS_RABBITMQ_NODE
port=18181

export KEYCLOAK_SYNC__AMQP__EXCHANGE=kcs-bench.events KEYCLOAK_SYNC__AMQP__QUEUE=kcs-bench \
  KEYCLOAK_SYNC__AMQP__DEAD_LETTER_EXCHANGE=kcs-bench.dlx KEYCLOAK_SYNC__AMQP__DEAD_LETTER_QUEUE=kcs-bench.dlq \
  KEYCLOAK_SYNC__HTTP__LISTEN=127.0.0.1:$port KEYCLOAK_SYNC__LOG__LEVEL=warn
export KEYCLOAK_SYNC__DATABASE__URL="${KCS_TEST_DATABASE_URL%/*}/kcs_bench_daemon"

reset() {
  fresh_db kcs_bench_daemon >/dev/null
  for q in kcs-bench kcs-bench.dlq; do rabbitmqctl -n "$node" delete_queue "$q" >/dev/null 2>&1 || true; done
  "$bin" migrate
}

applied() { psql "$KEYCLOAK_SYNC__DATABASE__URL" -tAc "SELECT count(*) FROM keycloak_sync.processed_events"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

start_daemon() {
  "$bin" run --no-migrate >"$work/daemon.log" 2>&1 &
  daemon=$!
}

stop_daemon() {
  kill -TERM "$daemon"
  wait "$daemon" || true
}

wait_applied() { # N
  while [ "$(applied)" -lt "$1" ]; do sleep 0.2; done
}

throughput() { # label N prefetch batch
  local label=$1 n=$2 file start end hwm
  file=$(sample_events "$events")
  reset
  head -n "$n" "$file" | "$bin" publish - >/dev/null
  KEYCLOAK_SYNC__AMQP__PREFETCH=$3 KEYCLOAK_SYNC__AMQP__BATCH_SIZE=$4 start_daemon
  start=$(date +%s.%N)
  wait_applied "$n"
  end=$(date +%s.%N)
  hwm=$(hwm_kb "$daemon")
  stop_daemon
  awk -v l="$label" -v n="$n" -v s="$start" -v e="$end" -v m="$hwm" \
    'BEGIN { printf "%-26s %8d events in %6.2f s = %7.0f events/s, peak RSS %d MiB\n", l, n, e - s, n / (e - s), m / 1024 }'
}

machine
echo "RabbitMQ, Postgres and the daemon share the machine"
want() { case " $parts " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if want throughput; then
echo "== throughput (queue pre-loaded, persistent messages)"
throughput "prefetch 1500 / batch 500" "$events" 1500 500
throughput "prefetch 1 / batch 1" "$slow_events" 1 1
fi

if want latency; then
echo "== latency at a steady 1,000 events/s for 30 s (commit time - publish time)"
reset
start_daemon
sleep 2
head -n 30000 "$(sample_events "$events")" | "$bin" publish - --rate 1000 --restamp >/dev/null
wait_applied 30000
curl -s "http://127.0.0.1:$port/metrics" | awk '
  /^keycloak_sync_lag_seconds_bucket/ { match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5); b[++n] = le; c[n] = $2 }
  /^keycloak_sync_lag_seconds_count/ { total = $2 }
  END {
    for (i = 1; i <= n; i++) { if (!p50 && c[i] >= total * 0.50) p50 = b[i]; if (!p99 && c[i] >= total * 0.99) p99 = b[i] }
    printf "events %d: p50 <= %s ms, p99 <= %s ms (histogram bucket bounds)\n", total, p50 * 1000, p99 * 1000
  }'
psql "$KEYCLOAK_SYNC__DATABASE__URL" -tAc "
  SELECT format('transaction start - publish: p50 %s ms, p99 %s ms, max %s ms',
    round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
    round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1), round(max(ms)::numeric, 1))
  FROM (SELECT extract(epoch FROM processed_at - event_time) * 1000 AS ms FROM keycloak_sync.processed_events) t"
stop_daemon
fi

if want memory; then
echo "== memory while draining a queue of $memory_events messages"
file=$(sample_events "$memory_events")
reset
"$bin" publish "$file" >/dev/null
echo "queue depth before start: $(rabbitmqctl -n "$node" list_queues name messages 2>/dev/null | awk '$1 == "kcs-bench" {print $2}')"
start_daemon
for second in $(seq 1 30); do
  sleep 1
  printf "t=%ss rss_kib=%s applied=%s\n" "$second" "$(rss_kb "$daemon")" "$(applied)"
done | awk '{ print } { split($2, r, "="); v = r[2] + 0; if (min == "" || v < min) min = v; if (v > max) max = v }
  END { printf "RSS over 30 s: min %d KiB, max %d KiB\n", min, max }'
stop_daemon
fi
