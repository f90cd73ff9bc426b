#!/usr/bin/env bash
# keycloak-sync on the three-node RabbitMQ cluster (scripts/services.sh cluster up), all on
# this machine:
#   replicas  N events pre-loaded on the quorum queue, 1, 2 and 3 replicas started at
#             once (replica r attached to node r), timed until all are applied; rounds
#             alternate 1 2 3 so that drift of the machine hits all alike
#   failover  one replica drains a pre-loaded queue; the node it is attached to is
#             stopped: the time until it is attached to another node, and until it
#             commits again — once with a follower node lost, once with the leader's
#
#   scripts/bench-cluster.sh [N=50000] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-50000}
rounds=${2:-3}
parts=${KCS_BENCH_PARTS:-replicas failover}  # any subset, e.g. KCS_BENCH_PARTS=failover

. scripts/bench-common.sh
scripts/services.sh cluster up >/dev/null 2>&1
eval "$(scripts/services.sh cluster env)"
IFS=, read -r -a urls <<<"$KCS_TEST_CLUSTER_URLS"
IFS=, read -r -a nodes <<<"$KCS_TEST_CLUSTER_NODES"
file=$(sample_events "$events")
export KEYCLOAK_SYNC__AMQP__EXCHANGE=kcs-cluster-bench.events KEYCLOAK_SYNC__AMQP__QUEUE=kcs-cluster-bench \
  KEYCLOAK_SYNC__AMQP__DEAD_LETTER_EXCHANGE=kcs-cluster-bench.dlx \
  KEYCLOAK_SYNC__AMQP__DEAD_LETTER_QUEUE=kcs-cluster-bench.dlq \
  KEYCLOAK_SYNC__AMQP__CONNECT_ORDER=listed KEYCLOAK_SYNC__LOG__LEVEL=warn
export KEYCLOAK_SYNC__DATABASE__URL="${KCS_TEST_DATABASE_URL%/*}/kcs_bench_cluster"

# list_from I → the broker list starting at node I (0-2)
list_from() { echo "${urls[$1]},${urls[$((($1 + 1) % 3))]},${urls[$((($1 + 2) % 3))]}"; }
applied() { psql "$KEYCLOAK_SYNC__DATABASE__URL" -tAc "SELECT count(*) FROM keycloak_sync.processed_events"; }
now() { date +%s.%N; }
elapsed() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.2f", e - s }'; }

reset() { # fresh database, fresh queues, the events on the queue
  fresh_db kcs_bench_cluster >/dev/null
  for q in kcs-cluster-bench kcs-cluster-bench.dlq kcs-cluster-bench.dlq.limbo; do
    rabbitmqctl -n "${nodes[0]}" delete_queue "$q" >/dev/null 2>&1 || true
  done
  "$bin" migrate
  KEYCLOAK_SYNC__AMQP__URL=$(list_from 0) "$bin" publish "$file" >/dev/null
}

pids=()
start_replica() { # NODE HTTP_PORT
  KEYCLOAK_SYNC__AMQP__URL=$(list_from "$1") KEYCLOAK_SYNC__HTTP__LISTEN=127.0.0.1:$2 \
    "$bin" run --no-migrate >>"$work/cluster-replica-$2.log" 2>&1 &
  pids+=($!)
}
stop_replicas() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap stop_replicas EXIT

replicas_rate() { # R → events/s
  reset
  local start end r
  start=$(now)
  for r in $(seq 0 $(($1 - 1))); do start_replica "$r" $((18190 + r)); done
  until [ "$(applied)" -ge "$events" ]; do sleep 0.2; done
  end=$(now)
  stop_replicas
  awk -v n="$events" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f\n", n / (e - s) }'
}

attached_node() { # HTTP_PORT → host:port
  curl -s "127.0.0.1:$1/readyz" | sed -nE 's/.*"amqp_node":"([^"]+)".*/\1/p'
}

leader() { # → index of the node holding the queue's leader
  local name
  name=$(rabbitmqctl -n "${nodes[0]}" -q list_queues name leader | awk '$1 == "kcs-cluster-bench" { print $2 }')
  for i in 0 1 2; do
    if [ "${nodes[$i]}" = "$name" ]; then echo "$i"; fi
  done
}

failover() { # leader|follower → "reattached_s committing_s"
  reset
  local lead node port=18195 before t0 t1 t2 c1
  lead=$(leader)
  if [ "$1" = leader ]; then node=$lead; else node=$(((lead + 1) % 3)); fi
  start_replica "$node" "$port"
  until [ "$(applied)" -ge $((events / 5)) ]; do sleep 0.1; done
  before=$(attached_node "$port")
  t0=$(now)
  scripts/services.sh cluster stop-node $((node + 1)) >/dev/null 2>&1
  until a=$(attached_node "$port") && [ -n "$a" ] && [ "$a" != "$before" ]; do sleep 0.05; done
  t1=$(now)
  c1=$(applied)
  until [ "$(applied)" -gt "$c1" ]; do sleep 0.05; done
  t2=$(now)
  stop_replicas
  scripts/services.sh cluster start-node $((node + 1)) >/dev/null 2>&1
  echo "$(elapsed "$t0" "$t1") $(elapsed "$t0" "$t2")"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

machine
echo "cluster: ${nodes[*]} (RabbitMQ $(rabbitmqctl -n "${nodes[0]}" -q version))"
echo "input: $file ($events events), $rounds rounds, 1 2 3 replicas alternating"
declare -A rates
[[ " $parts " == *" replicas "* ]] && for _ in $(seq "$rounds"); do
  for r in 1 2 3; do
    rate=$(replicas_rate "$r")
    rates[$r]+="$rate "
    echo "  $r replica(s): $rate events/s"
  done
done
[[ " $parts " == *" replicas "* ]] && for r in 1 2 3; do
  echo "replicas=$r: median $(tr ' ' '\n' <<<"${rates[$r]}" | grep . | median) events/s (runs: ${rates[$r]})"
done
[[ " $parts " == *" failover "* ]] && for kind in follower leader; do
  for _ in $(seq "$rounds"); do
    read -r reattached committing < <(failover "$kind")
    echo "  lost the attached node ($kind): attached elsewhere after ${reattached} s, committing after ${committing} s"
  done
done
