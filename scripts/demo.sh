#!/usr/bin/env bash
# End to end on this machine: start Postgres and RabbitMQ (installing them if needed),
# build keycloak-sync, run the daemon, publish the bundled sample Keycloak events (and one
# malformed message) to RabbitMQ, wait until they are applied, show the rows, /readyz,
# /metrics and the dead-letter queue, then stop the daemon with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up
eval "$(scripts/services.sh env)"
node=$KCS_RABBITMQ_NODE

# A database and queues of its own, fresh each run, so the demo shows exactly what the
# sample log produces.
db_name=keycloak_sync_demo
export KEYCLOAK_SYNC__DATABASE__URL="${KCS_TEST_DATABASE_URL%/*}/$db_name"
export KEYCLOAK_SYNC__AMQP__EXCHANGE=keycloak-sync-demo.events
export KEYCLOAK_SYNC__AMQP__QUEUE=keycloak-sync-demo
export KEYCLOAK_SYNC__AMQP__DEAD_LETTER_EXCHANGE=keycloak-sync-demo.dlx
export KEYCLOAK_SYNC__AMQP__DEAD_LETTER_QUEUE=keycloak-sync-demo.dlq
export KEYCLOAK_SYNC__HTTP__LISTEN=127.0.0.1:18080
psql "$KCS_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" 2>/dev/null
psql "$KCS_TEST_DATABASE_URL" -qc "CREATE DATABASE $db_name"
for queue in "$KEYCLOAK_SYNC__AMQP__QUEUE" "$KEYCLOAK_SYNC__AMQP__DEAD_LETTER_QUEUE"; do
  rabbitmqctl -n "$node" delete_queue "$queue" >/dev/null 2>&1 || true
done

echo "== building keycloak-sync (release)"
cargo build --release --locked --quiet
bin=$PWD/target/release/keycloak-sync

echo "== starting the daemon (log: .local/demo-daemon.log)"
"$bin" run >.local/demo-daemon.log 2>&1 &
daemon=$!
trap 'kill "$daemon" 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do
  curl -fs http://127.0.0.1:18080/readyz >/dev/null 2>&1 && break
  sleep 0.5
done
echo "/readyz: $(curl -s http://127.0.0.1:18080/readyz)"

echo "== publishing samples/keycloak-events.jsonl (envelope, aznamier and Keycloak REST shapes mixed)"
"$bin" publish samples/keycloak-events.jsonl
echo "== publishing samples/keycloak-directory-events.jsonl (admins managing groups, roles and organizations)"
"$bin" publish samples/keycloak-directory-events.jsonl
echo '{"schema":1,"kind":"user","id":"broken","time":"yesterday"}' | "$bin" publish - >/dev/null
echo "   and one malformed message, which goes to the dead-letter queue"

expected=$(($(grep -c . samples/keycloak-events.jsonl) + $(grep -c . samples/keycloak-directory-events.jsonl)))
printf "== waiting until %s events are applied" "$expected"
for _ in $(seq 1 120); do
  done_count=$(psql "$KEYCLOAK_SYNC__DATABASE__URL" -tAc "SELECT count(*) FROM keycloak_sync.processed_events" 2>/dev/null || echo 0)
  [ "$done_count" = "$expected" ] && break
  printf "."
  sleep 0.5
done
echo " $done_count"

q() { psql "$KEYCLOAK_SYNC__DATABASE__URL" -X -q -P pager=off -c "SET search_path = keycloak_sync" -c "$1"; }
echo "== users (first 10)"
q "SELECT id, username, email, first_name, enabled, login_count, last_login_at, deleted_at
   FROM users ORDER BY username LIMIT 10"
echo "== user_sessions by state"
q "SELECT is_active, coalesce(end_reason, '-') AS end_reason, count(*) FROM user_sessions
   GROUP BY 1, 2 ORDER BY 1 DESC, 2"
echo "== groups and their members now (subgroups under their parent)"
q "SELECT g.path, g.deleted_at IS NOT NULL AS deleted,
          count(*) FILTER (WHERE ug.removed_at IS NULL AND ug.user_id IS NOT NULL) AS members
   FROM groups g LEFT JOIN user_groups ug ON ug.group_id = g.id
   GROUP BY g.id, g.path, g.deleted_at ORDER BY g.deleted_at IS NOT NULL, g.path LIMIT 10"
echo "== roles held directly, and organization members"
q "SELECT coalesce(role_name, '?') AS role, count(*) FILTER (WHERE direct) AS holders
   FROM user_roles GROUP BY 1 ORDER BY 1"
q "SELECT o.name AS organization, count(*) FILTER (WHERE m.removed_at IS NULL) AS members
   FROM organizations o LEFT JOIN organization_members m ON m.organization_id = o.id
   GROUP BY o.name ORDER BY o.name"
echo "== processed_events"
q "SELECT kind, outcome, count(*) FROM processed_events GROUP BY 1, 2 ORDER BY 1, 2"

echo "== GET /readyz"
curl -s http://127.0.0.1:18080/readyz
echo
echo "== GET /metrics (excerpt)"
curl -s http://127.0.0.1:18080/metrics | grep -E '^keycloak_sync_(messages|events_applied_total\{kind="user",type="LOGIN"|consumer|database|batch_size_count|lag_seconds_count|apply_seconds_sum)'
echo "== dead-letter queue"
"$bin" dlq list

echo "== stopping the daemon (SIGTERM)"
kill -TERM "$daemon"
status=0
wait "$daemon" || status=$?
trap - EXIT
echo "daemon exited with status $status"
tail -n 3 .local/demo-daemon.log
