#!/usr/bin/env bash
# Before/after throughput: this checkout's release build against another build of
# keycloak-sync (e.g. an earlier commit), in the same run, rounds alternating A B A B so
# that drift of the machine hits both alike. Each run gets a fresh database (and queue).
#   replay  the same N-event file (--batch-size 500 --workers 2)
#   daemon  N events pre-loaded on the queue, the daemon timed until all are applied
#
#   scripts/bench-compare.sh OTHER_BINARY [N=200000] [ROUNDS=3]
#
# KINDS="daemon" (or "replay") measures only that path.
# SAMPLE_FROM=other generates the input with OTHER_BINARY's sampler instead of this
# build's: the mix of events an older build knew, so both do the same work.
# SAMPLE_ARGS adds sampler flags ("--directory-weight 300": memberships, roles, groups).
#
# Build an earlier commit into OTHER_BINARY with, for example:
#   git worktree add /tmp/kcs-old <commit> && (cd /tmp/kcs-old && cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
other=$(realpath "${1:?usage: scripts/bench-compare.sh OTHER_BINARY [N] [ROUNDS]}")
events=${2:-200000}
rounds=${3:-3}

. scripts/bench-common.sh
node=$KCS_RABBITMQ_NODE
case ${SAMPLE_FROM:-this} in
  this) file=$(sample_events "$events") ;;
  other) file=$(sample_events "$events" "$other") ;;
  *) echo "SAMPLE_FROM is this or other" >&2; exit 2 ;;
esac
export KEYCLOAK_SYNC__AMQP__EXCHANGE=kcs-compare.events KEYCLOAK_SYNC__AMQP__QUEUE=kcs-compare \
  KEYCLOAK_SYNC__AMQP__DEAD_LETTER_EXCHANGE=kcs-compare.dlx KEYCLOAK_SYNC__AMQP__DEAD_LETTER_QUEUE=kcs-compare.dlq \
  KEYCLOAK_SYNC__HTTP__LISTEN=127.0.0.1:18182 KEYCLOAK_SYNC__LOG__LEVEL=warn

replay_rate() { # BINARY → events/s
  local url
  url=$(fresh_db kcs_compare)
  KEYCLOAK_SYNC__DATABASE__URL=$url "$1" migrate
  KEYCLOAK_SYNC__DATABASE__URL=$url "$1" replay "$file" --batch-size 500 --workers 2 --no-migrate 2>/dev/null |
    sed -nE 's/^replay summary: .*, ([0-9]+) events\/s\)$/\1/p'
}

daemon_rate() { # BINARY → events/s
  local url start end pid
  url=$(fresh_db kcs_compare)
  for q in kcs-compare kcs-compare.dlq; do rabbitmqctl -n "$node" delete_queue "$q" >/dev/null 2>&1 || true; done
  export KEYCLOAK_SYNC__DATABASE__URL=$url
  "$1" migrate
  "$1" publish "$file" >/dev/null
  "$1" run --no-migrate >"$work/compare-daemon.log" 2>&1 &
  pid=$!
  start=$(date +%s.%N)
  # Until every event is recorded — or, for a mix whose events are not all recorded (an
  # ignored or repeated one), until the count has not moved for 3 s: timed to its last move.
  local seen=0 now still=0
  end=$start
  while [ "$seen" -lt "$events" ] && [ "$still" -lt 15 ]; do
    sleep 0.2
    now=$(psql "$url" -tAc 'SELECT count(*) FROM keycloak_sync.processed_events' 2>/dev/null || echo 0)
    if [ "$now" -gt "$seen" ]; then seen=$now still=0 end=$(date +%s.%N); else still=$((still + 1)); fi
  done
  [ "$seen" -ge "$events" ] || echo "daemon: $seen of $events events recorded (the rest not recorded by the inbox)" >&2
  kill -TERM "$pid"
  wait "$pid" || true
  awk -v n="$seen" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f\n", n / (e - s) }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

machine
echo "A: $bin"
echo "B: $other"
echo "input: $file ($events events), $rounds rounds, A and B alternating"
for kind in ${KINDS:-replay daemon}; do
  a=() b=()
  for _ in $(seq "$rounds"); do
    a+=("$("${kind}_rate" "$bin")")
    b+=("$("${kind}_rate" "$other")")
  done
  ma=$(printf '%s\n' "${a[@]}" | median)
  mb=$(printf '%s\n' "${b[@]}" | median)
  printf '%-7s A: %s events/s (runs: %s)\n' "$kind" "$ma" "${a[*]}"
  printf '%-7s B: %s events/s (runs: %s)\n' "$kind" "$mb" "${b[*]}"
  awk -v a="$ma" -v b="$mb" -v k="$kind" 'BEGIN { printf "%-7s A/B: %.3f\n", k, a / b }'
done
