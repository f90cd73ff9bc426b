# shellcheck shell=bash
# Sourced by scripts that drive the Keycloak of scripts/keycloak.sh over HTTP (demo.sh,
# bench-keycloak.sh): needs KEYCLOAK_URL, KEYCLOAK_ADMIN_USER and KEYCLOAK_ADMIN_PASSWORD
# (scripts/keycloak.sh env).

# field NAME: the string value of NAME in the JSON on stdin (flat, first match).
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

# admin_token: a fresh token of the master realm's admin.
admin_token() {
  curl -fsS "$KEYCLOAK_URL/realms/master/protocol/openid-connect/token" \
    -d grant_type=password -d client_id=admin-cli \
    -d "username=$KEYCLOAK_ADMIN_USER" --data-urlencode "password=$KEYCLOAK_ADMIN_PASSWORD" | field access_token
}

# admin METHOD PATH [JSON]: the Admin API under /admin/realms (PATH "" for the realm list).
admin() {
  local method=$1 path=$2
  shift 2
  curl -fsS -X "$method" -H "Authorization: Bearer $(admin_token)" -H 'Content-Type: application/json' \
    "$KEYCLOAK_URL/admin/realms$path" ${1:+--data "$1"}
}

# bench_realm REALM QUEUE LISTENERS: for the login benchmarks, a fresh realm REALM with the
# listeners LISTENERS (a JSON list), the confidential client `bench` (secret bench-secret,
# direct grants) and the user bench/bench-pass; and a durable quorum queue QUEUE bound to
# the realm's events on keycloak.events, so that none is unroutable (the provider would
# hold them back). Needs KCS_AMQP_PORT (scripts/services.sh env).
bench_realm() {
  local realm=$1 queue=$2 listeners=$3
  local management="http://guest:guest@127.0.0.1:$((${KCS_AMQP_PORT:-56729} + 1))/api"
  curl -fsS -X PUT -H 'Content-Type: application/json' "$management/queues/%2f/$queue" \
    -d '{"durable":true,"arguments":{"x-queue-type":"quorum"}}' >/dev/null
  curl -fsS -X POST -H 'Content-Type: application/json' "$management/bindings/%2f/e/keycloak.events/q/$queue" \
    -d "{\"routing_key\":\"kc.$realm.#\"}" >/dev/null
  admin DELETE "/$realm" >/dev/null 2>&1 || true
  admin POST "" "{\"realm\":\"$realm\",\"enabled\":true,\"eventsListeners\":$listeners,
    \"clients\":[{\"clientId\":\"bench\",\"secret\":\"bench-secret\",\"publicClient\":false,
      \"directAccessGrantsEnabled\":true}],
    \"users\":[{\"username\":\"bench\",\"enabled\":true,\"email\":\"bench@bench.test\",
      \"firstName\":\"Bench\",\"lastName\":\"User\",
      \"credentials\":[{\"type\":\"password\",\"value\":\"bench-pass\",\"temporary\":false}]}]}"
}

# bench_login_lua FILE: the wrk script of the bench user's password grant (bench_realm).
bench_login_lua() {
  cat >"$1" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=password&client_id=bench&client_secret=bench-secret&username=bench&password=bench-pass"
EOF
}
