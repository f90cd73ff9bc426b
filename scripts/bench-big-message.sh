#!/usr/bin/env bash
# Peak RSS of the daemon (VmHWM) before and after one 16 MiB message arrives: over
# limits.max_message_bytes (1 MiB), it is never parsed and its dead-letter copy keeps at
# most 4 KiB. RabbitMQ 3.10 accepts messages up to max_message_size (128 MiB by default);
# lower it on the broker to refuse them before they reach any consumer.
#
#   scripts/bench-big-message.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
node=$KCS_RABBITMQ_NODE
name="kcs-big-$RANDOM"
export KEYCLOAK_SYNC__DATABASE__URL
KEYCLOAK_SYNC__DATABASE__URL=$(fresh_db kcs_big_message)
export KEYCLOAK_SYNC__AMQP__EXCHANGE=$name.events KEYCLOAK_SYNC__AMQP__QUEUE=$name \
  KEYCLOAK_SYNC__AMQP__DEAD_LETTER_EXCHANGE=$name.dlx KEYCLOAK_SYNC__AMQP__DEAD_LETTER_QUEUE=$name.dlq \
  KEYCLOAK_SYNC__HTTP__LISTEN=127.0.0.1:18183 KEYCLOAK_SYNC__LOG__LEVEL=warn
"$bin" run >"$work/big-message-daemon.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do curl -sf 127.0.0.1:18183/readyz >/dev/null && break; sleep 0.5; done
echo "before: $(grep VmHWM /proc/$pid/status)"
python3 -c "import json; print(json.dumps({'schema':1,'kind':'user','id':'huge','time':1,'realmId':'r','type':'LOGIN','userId':'u','details':{'pad':'x'*(16<<20)}}))" >"$work/huge.jsonl"
KEYCLOAK_SYNC__LIMITS__MAX_MESSAGE_BYTES=33554432 "$bin" publish "$work/huge.jsonl" >/dev/null
for _ in $(seq 1 60); do
  depth=$(rabbitmqctl -q -n "$node" list_queues name messages | awk -v q="$name.dlq" '$1 == q {print $2}')
  [ "$depth" = 1 ] && break
  sleep 0.5
done
echo "dead-lettered: ${depth:-0}"
echo "after:  $(grep VmHWM /proc/$pid/status)"
