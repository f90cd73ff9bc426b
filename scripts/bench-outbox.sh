#!/usr/bin/env bash
# Delivery modes side by side against the real Keycloak: password-grant logins per second
# (p50/p99) and the time from each event to its arrival at a consumer (p50/p99; an upper
# bound of commit→publish) for `outbox`, `direct`, and no provider, rounds alternating in
# one run. Two Keycloak instances of the bench's own (scripts/keycloak.sh, Postgres): one
# with delivery=outbox, one with delivery=direct, each also measured with the realm's
# listener off ("none"), so each mode is compared with its own instance; load from wrk on
# loopback; the consumer is examples/publish_latency.rs.
#
#   scripts/bench-outbox.sh [ROUNDS] [SECONDS] [CONNECTIONS]    (default 3 20 8)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-20}
connections=${3:-8}

scripts/services.sh up >/dev/null 2>&1
eval "$(scripts/services.sh env)"
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
cargo build --release --quiet --example publish_latency
consumer=target/release/examples/publish_latency
work=.local/bench
mkdir -p "$work"
outbox_port=30780
direct_port=30880
KCS_KEYCLOAK_PORT=$outbox_port scripts/keycloak.sh up
KCS_KEYCLOAK_PORT=$direct_port KCS_KEYCLOAK_EXTRA_ARGS="--spi-events-listener--keycloak-sync--delivery=direct" \
  scripts/keycloak.sh up
cleanup() {
  KCS_KEYCLOAK_PORT=$outbox_port scripts/keycloak.sh down || true
  KCS_KEYCLOAK_PORT=$direct_port scripts/keycloak.sh down || true
}
trap cleanup EXIT
eval "$(scripts/keycloak.sh env)"

realm=bench-outbox
# shellcheck source=scripts/keycloak-admin.sh
. scripts/keycloak-admin.sh
amqp="amqp://guest:guest@127.0.0.1:${KCS_AMQP_PORT:-56729}/%2f"

# prepare PORT: the bench realm (its own realm name per instance) and a queue bound to it.
prepare() {
  export KEYCLOAK_URL="http://127.0.0.1:$1"
  bench_realm "$realm-$1" "$realm-$1" '["jboss-logging","keycloak-sync"]'
}
listeners() {
  export KEYCLOAK_URL="http://127.0.0.1:$1"
  admin PUT "/$realm-$1" "{\"eventsListeners\":$2}"
}
prepare $outbox_port
prepare $direct_port

bench_login_lua "$work/outbox-login.lua"

# round VARIANT PORT LABEL: one wrk run with the consumer on the instance's queue alongside.
round() {
  local variant="$1 ($2)" port=$2 name="$realm-$2" out latency
  rabbitmqctl -n "$KCS_RABBITMQ_NODE" -q purge_queue "$name" >/dev/null 2>&1 || true
  "$consumer" --amqp "$amqp" --queue "$name" --seconds $((seconds + 5)) >"$work/latency.txt" &
  local consuming=$!
  out=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$work/outbox-login.lua" \
    "http://127.0.0.1:$port/realms/$name/protocol/openid-connect/token")
  wait "$consuming"
  latency=$(cat "$work/latency.txt")
  printf "%-28s %9s %9s %9s %7s   %s\n" "$3 $variant" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1 == "50%" {print $2}' <<<"$out")" "$(awk '$1 == "99%" {print $2}' <<<"$out")" \
    "$(awk '/Non-2xx/ {print $NF}' <<<"$out" | grep . || echo 0)" "$latency"
}

echo "machine: $(nproc) cores; Keycloak $KCS_KEYCLOAK_VERSION; $connections connections, ${seconds} s per round"
echo "warm-up"
for port in $outbox_port $direct_port; do
  wrk -t2 -c"$connections" -d10s -s "$work/outbox-login.lua" \
    "http://127.0.0.1:$port/realms/$realm-$port/protocol/openid-connect/token" >/dev/null
done
printf "%-28s %9s %9s %9s %7s   %s\n" variant logins/s p50 p99 non-2xx "event → consumer"
for r in $(seq 1 "$rounds"); do
  round outbox $outbox_port "round $r"
  listeners $outbox_port '["jboss-logging"]'
  round none $outbox_port "round $r"
  listeners $outbox_port '["jboss-logging","keycloak-sync"]'
  round direct $direct_port "round $r"
  listeners $direct_port '["jboss-logging"]'
  round none $direct_port "round $r"
  listeners $direct_port '["jboss-logging","keycloak-sync"]'
done
