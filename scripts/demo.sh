#!/usr/bin/env bash
# End to end on this machine, with a real Keycloak: start Postgres and RabbitMQ (installing
# them if needed) and Keycloak with the keycloak-sync provider (scripts/keycloak.sh), build
# keycloak-sync and run the daemon, make a `demo` realm, have users log in and out through
# Keycloak's own endpoints, an admin disable one and change a group, then show the rows,
# /readyz, /metrics and the dead-letter queue (one malformed message is published beside
# Keycloak's), and stop the daemon with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

scripts/services.sh up
eval "$(scripts/services.sh env)"
node=$KCS_RABBITMQ_NODE
echo "== Keycloak with the provider (scripts/keycloak.sh up)"
scripts/keycloak.sh up
eval "$(scripts/keycloak.sh env)"

realm=demo
password='Demo-pa55word'
# A database and queues of its own, fresh each run, so the demo shows exactly what the
# flows below produce.
db_name=keycloak_sync_demo
export KEYCLOAK_SYNC__DATABASE__URL="${KCS_TEST_DATABASE_URL%/*}/$db_name"
export KEYCLOAK_SYNC__AMQP__QUEUE=keycloak-sync-demo
export KEYCLOAK_SYNC__AMQP__DEAD_LETTER_EXCHANGE=keycloak-sync-demo.dlx
export KEYCLOAK_SYNC__AMQP__DEAD_LETTER_QUEUE=keycloak-sync-demo.dlq
export KEYCLOAK_SYNC__HTTP__LISTEN=127.0.0.1:18080
export KEYCLOAK_SYNC__KEYCLOAK__URL=$KEYCLOAK_URL
export KEYCLOAK_SYNC__KEYCLOAK__REALMS=$realm
export KEYCLOAK_SYNC__KEYCLOAK__CLIENT_ID=keycloak-sync
export KEYCLOAK_SYNC__KEYCLOAK__CLIENT_SECRET=demo-sync-secret
psql "$KCS_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" 2>/dev/null
psql "$KCS_TEST_DATABASE_URL" -qc "CREATE DATABASE $db_name"
for queue in "$KEYCLOAK_SYNC__AMQP__QUEUE" "$KEYCLOAK_SYNC__AMQP__DEAD_LETTER_QUEUE"; do
  rabbitmqctl -n "$node" delete_queue "$queue" >/dev/null 2>&1 || true
done

# --- Keycloak's endpoints -------------------------------------------------------------
# shellcheck source=scripts/keycloak-admin.sh
. scripts/keycloak-admin.sh
login() { # USERNAME: a password-grant login through the web client; prints the refresh token
  curl -fsS "$KEYCLOAK_URL/realms/$realm/protocol/openid-connect/token" \
    -d grant_type=password -d client_id=web -d client_secret=demo-web-secret -d scope=openid \
    -d "username=$1" --data-urlencode "password=$password" | field refresh_token
}
user_id() { admin GET "/$realm/users?exact=true&username=$1" | sed -n 's/^\[{"id":"\([^"]*\)".*/\1/p'; }

echo "== the demo realm (made afresh: listener keycloak-sync, events stored, admin events with representations)"
admin DELETE "/$realm" >/dev/null 2>&1 || true
admin POST "" "{\"realm\":\"$realm\",\"enabled\":true,\"eventsEnabled\":true,
  \"eventsListeners\":[\"jboss-logging\",\"keycloak-sync\"],
  \"adminEventsEnabled\":true,\"adminEventsDetailsEnabled\":true,
  \"clients\":[{\"clientId\":\"web\",\"secret\":\"demo-web-secret\",\"publicClient\":false,
     \"directAccessGrantsEnabled\":true,\"redirectUris\":[\"http://127.0.0.1/*\"]},
   {\"clientId\":\"keycloak-sync\",\"secret\":\"demo-sync-secret\",\"publicClient\":false,
     \"serviceAccountsEnabled\":true,\"standardFlowEnabled\":false}],
  \"users\":[{\"username\":\"service-account-keycloak-sync\",\"enabled\":true,
     \"serviceAccountClientId\":\"keycloak-sync\",\"clientRoles\":{\"realm-management\":
     [\"view-users\",\"query-users\",\"view-events\",\"view-realm\",\"view-clients\"]}}]}"

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

echo "== an admin creates alice, bob and carol and a group staff with bob in it"
for name in alice bob carol; do
  admin POST "/$realm/users" "{\"username\":\"$name\",\"email\":\"$name@demo.test\",\"enabled\":true,
    \"firstName\":\"${name^}\",\"lastName\":\"Demo\",
    \"credentials\":[{\"type\":\"password\",\"value\":\"$password\",\"temporary\":false}]}"
done
admin POST "/$realm/groups" '{"name":"staff"}'
staff=$(admin GET "/$realm/groups?search=staff" | sed -n 's/^\[{"id":"\([^"]*\)".*/\1/p')
admin PUT "/$realm/users/$(user_id bob)/groups/$staff"

echo "== they log in through Keycloak (password grant on the web client); alice twice"
alice_refresh=$(login alice)
login alice >/dev/null
bob_refresh=$(login bob)
login carol >/dev/null
echo "== alice refreshes, bob logs out"
curl -fsS "$KEYCLOAK_URL/realms/$realm/protocol/openid-connect/token" -o /dev/null \
  -d grant_type=refresh_token -d client_id=web -d client_secret=demo-web-secret -d "refresh_token=$alice_refresh"
curl -fsS "$KEYCLOAK_URL/realms/$realm/protocol/openid-connect/logout" \
  -d client_id=web -d client_secret=demo-web-secret -d "refresh_token=$bob_refresh"
echo "== the admin disables carol, moves bob out of staff and alice in, changes alice's email"
admin PUT "/$realm/users/$(user_id carol)" '{"enabled":false}'
admin DELETE "/$realm/users/$(user_id bob)/groups/$staff"
admin PUT "/$realm/users/$(user_id alice)/groups/$staff"
admin PUT "/$realm/users/$(user_id alice)" '{"email":"alice@new.demo.test"}'
echo '{"schema":1,"kind":"user","id":"broken","time":"yesterday"}' | "$bin" publish - >/dev/null
echo "   and one malformed message is published beside Keycloak's, for the dead-letter queue"

q() { psql "$KEYCLOAK_SYNC__DATABASE__URL" -X -q -P pager=off -c "SET search_path = keycloak_sync" -c "$1"; }
qv() { psql "$KEYCLOAK_SYNC__DATABASE__URL" -X -tAc "SET search_path = keycloak_sync" -c "$1" 2>/dev/null | tail -n 1; }
printf "== waiting until the tables say what Keycloak did"
for _ in $(seq 1 120); do
  [ "$(qv "SELECT count(*) FROM users WHERE (username = 'carol' AND NOT enabled)
             OR (username = 'alice' AND email = 'alice@new.demo.test')")" = 2 ] &&
    [ "$(qv "SELECT count(*) FROM user_groups WHERE member")" = 1 ] &&
    [ "$(qv "SELECT count(*) FROM user_sessions WHERE end_reason = 'logout'")" = 1 ] && break
  printf "."
  sleep 0.5
done
echo

echo "== users"
q "SELECT username, email, first_name, enabled, login_count, last_login_at IS NOT NULL AS logged_in
   FROM users ORDER BY username"
echo "== user_sessions"
q "SELECT u.username, s.client_id, s.is_active, coalesce(s.end_reason, '-') AS end_reason,
          s.refresh_count, s.started_at
   FROM user_sessions s LEFT JOIN users u ON u.id = s.user_id ORDER BY u.username, s.started_at"
echo "== groups and members"
q "SELECT g.path, u.username, ug.member FROM user_groups ug
   JOIN groups g ON g.id = ug.group_id JOIN users u ON u.id = ug.user_id ORDER BY 1, 2"
echo "== processed_events"
q "SELECT kind, type, outcome, count(*) FROM processed_events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"

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
echo "== demo done in $(($(date +%s) - started)) s (Keycloak keeps running: scripts/keycloak.sh down stops it)"
