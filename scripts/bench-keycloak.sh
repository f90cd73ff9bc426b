#!/usr/bin/env bash
# The provider's cost inside a real Keycloak: password-grant logins per second and their
# p50/p99 latency with the realm's listeners `jboss-logging` + `keycloak-sync` against
# `jboss-logging` alone, rounds alternating on one Keycloak (scripts/keycloak.sh), load
# from wrk on loopback.
#
#   scripts/bench-keycloak.sh [ROUNDS] [SECONDS] [CONNECTIONS]    (default 6 20 8)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-6}
seconds=${2:-20}
connections=${3:-8}

scripts/services.sh up >/dev/null 2>&1
eval "$(scripts/services.sh env)"
scripts/keycloak.sh up
eval "$(scripts/keycloak.sh env)"
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
work=.local/bench
mkdir -p "$work"

realm=bench-login
# shellcheck source=scripts/keycloak-admin.sh
. scripts/keycloak-admin.sh
listeners() { admin PUT "/$realm" "{\"eventsListeners\":$1}"; }

# The events must be routable (else the provider holds them back): a queue of the bench's
# own, bound to the realm, purged between rounds.
queue=bench-keycloak-logins
bench_realm "$realm" "$queue" '["jboss-logging"]'
bench_login_lua "$work/login.lua"
url="$KEYCLOAK_URL/realms/$realm/protocol/openid-connect/token"

echo "machine: $(nproc) cores; Keycloak $KCS_KEYCLOAK_VERSION; $connections connections, ${seconds} s per round"
echo "warm-up"
listeners '["jboss-logging","keycloak-sync"]' && wrk -t2 -c"$connections" -d10s -s "$work/login.lua" "$url" >/dev/null
printf "%-28s %10s %10s %10s %8s\n" variant logins/s p50 p99 non-2xx
for round in $(seq 1 "$rounds"); do
  for variant in with-provider without; do
    if [ $variant = with-provider ]; then listeners '["jboss-logging","keycloak-sync"]'; else listeners '["jboss-logging"]'; fi
    rabbitmqctl -n "$KCS_RABBITMQ_NODE" -q purge_queue "$queue" >/dev/null 2>&1 || true
    out=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$work/login.lua" "$url")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    printf "%-28s %10s %10s %10s %8s\n" "round $round $variant" "$rps" "$p50" "$p99" "${errors:-0}"
  done
done
admin DELETE "/$realm" >/dev/null
