#!/usr/bin/env bash
# The token API against the real Keycloak (scripts/keycloak.sh) and the local Postgres and
# RabbitMQ: a served (cached) access token under CONCURRENCY callers at once, the refresh
# path through the API (every request a refresh at Keycloak, rotation on), and the same
# refreshes sent to Keycloak directly, rounds alternating (examples/token_load.rs).
#
#   scripts/bench-token-api.sh [USERS=200] [CONCURRENCY=200] [ROUNDS=4] [SECONDS=15]
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-200}
concurrency=${2:-200}
rounds=${3:-4}
seconds=${4:-15}

. scripts/bench-common.sh
scripts/keycloak.sh up
eval "$(scripts/keycloak.sh env)"
# shellcheck source=scripts/keycloak-admin.sh
. scripts/keycloak-admin.sh
cargo build --release --locked --quiet --example token_load
realm=bench-tokens
api_port=18281

# A realm with rotation on, the users' confidential client, the caller's service account
# and the daemon's Admin API client (realm-management view rights).
admin DELETE "/$realm" >/dev/null 2>&1 || true
users_json=$(for i in $(seq 0 $((users - 1))); do
  printf '{"username":"bench-%s","enabled":true,"email":"bench-%s@bench.test","firstName":"B","lastName":"U","credentials":[{"type":"password","value":"bench-pass","temporary":false}]},' "$i" "$i"
done)
admin POST "" "{\"realm\":\"$realm\",\"enabled\":true,\"revokeRefreshToken\":true,\"refreshTokenMaxReuse\":0,
  \"eventsListeners\":[\"jboss-logging\"],
  \"clients\":[
    {\"clientId\":\"web\",\"secret\":\"web-secret\",\"publicClient\":false,\"directAccessGrantsEnabled\":true},
    {\"clientId\":\"backend\",\"secret\":\"backend-secret\",\"publicClient\":false,\"serviceAccountsEnabled\":true,
     \"standardFlowEnabled\":false},
    {\"clientId\":\"sync\",\"secret\":\"sync-secret\",\"publicClient\":false,\"serviceAccountsEnabled\":true,
     \"standardFlowEnabled\":false}],
  \"users\":[${users_json}
    {\"username\":\"service-account-sync\",\"enabled\":true,\"serviceAccountClientId\":\"sync\",
     \"clientRoles\":{\"realm-management\":[\"view-realm\",\"view-users\"]}}]}"

db=$(fresh_db kcs_bench_tokens)
vault_key=$(head -c32 /dev/urandom | base64)
export KEYCLOAK_SYNC__DATABASE__URL=$db KEYCLOAK_SYNC__LOG__LEVEL=warn \
  KEYCLOAK_SYNC__AMQP__EXCHANGE=kcs-bench-tokens.events KEYCLOAK_SYNC__AMQP__QUEUE=kcs-bench-tokens \
  KEYCLOAK_SYNC__AMQP__DEAD_LETTER_EXCHANGE=kcs-bench-tokens.dlx \
  KEYCLOAK_SYNC__AMQP__DEAD_LETTER_QUEUE=kcs-bench-tokens.dlq \
  KEYCLOAK_SYNC__HTTP__LISTEN=127.0.0.1:18280 \
  KEYCLOAK_SYNC__KEYCLOAK__URL=$KEYCLOAK_URL KEYCLOAK_SYNC__KEYCLOAK__REALMS=$realm \
  KEYCLOAK_SYNC__KEYCLOAK__CLIENT_ID=sync KEYCLOAK_SYNC__KEYCLOAK__CLIENT_SECRET=sync-secret \
  KEYCLOAK_SYNC__VAULT__KEYS="k1:$vault_key" KEYCLOAK_SYNC__VAULT__ACTIVE_KEY=k1 \
  KEYCLOAK_SYNC__API__LISTEN=127.0.0.1:$api_port KEYCLOAK_SYNC__API__CALLER_CONCURRENCY=$concurrency \
  KEYCLOAK_SYNC__API__CALLERS="[{\"realm\":\"$realm\",\"client_id\":\"backend\",\"read\":[\"web\"],\"store\":[\"web\"]}]" \
  KEYCLOAK_SYNC__API__CLIENTS="[{\"realm\":\"$realm\",\"client_id\":\"web\",\"secret\":\"web-secret\"}]"
"$bin" run >"$work/token-api.log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; admin DELETE "/$realm" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:18280/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done

machine
echo "Keycloak $KCS_KEYCLOAK_VERSION (rotation on); keycloak-sync $(git rev-parse --short HEAD)"
target/release/examples/token_load --keycloak "$KEYCLOAK_URL" --realm "$realm" \
  --api "http://127.0.0.1:$api_port" --client-secret web-secret --caller-secret backend-secret \
  --users "$users" --concurrency "$concurrency" --rounds "$rounds" --seconds "$seconds" \
  --reset-cmd "psql -qAt '$db' -c \"DELETE FROM keycloak_sync.auth_vault WHERE token_type = 'access'\""
echo "daemon peak RSS: $(awk '/^VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$daemon/status")"
