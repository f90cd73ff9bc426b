#!/usr/bin/env bash
# End to end on this machine: start Postgres and RabbitMQ (installing them if needed),
# build keycloak-sync, apply the bundled sample Keycloak event log and show the rows it
# produced. Run it twice: the second run finds every event already applied.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up
eval "$(scripts/services.sh env)"
# A database of its own, so the demo shows exactly what the sample log produces.
export KEYCLOAK_SYNC__DATABASE__URL="${KCS_TEST_DATABASE_URL%/*}/keycloak_sync_demo"
psql "$KCS_TEST_DATABASE_URL" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'keycloak_sync_demo'" | grep -q 1 ||
  psql "$KCS_TEST_DATABASE_URL" -qc "CREATE DATABASE keycloak_sync_demo"

echo "== building keycloak-sync (release)"
cargo build --release --locked --quiet
bin=target/release/keycloak-sync

echo "== effective configuration"
"$bin" config check | sed -n '1,3p'

echo "== replaying samples/keycloak-events.jsonl (envelope, aznamier and Keycloak REST shapes mixed)"
"$bin" replay samples/keycloak-events.jsonl --rejects .local/demo-rejects.jsonl

db="$KEYCLOAK_SYNC__DATABASE__URL"
q() { psql "$db" -X -q -P pager=off -c "SET search_path = keycloak_sync" -c "$1"; }
echo "== users (first 10)"
q "SELECT id, username, email, first_name, enabled, login_count, last_login_at, deleted_at
   FROM users ORDER BY username LIMIT 10"
echo "== user_sessions by state"
q "SELECT is_active, coalesce(end_reason, '-') AS end_reason, count(*) FROM user_sessions
   GROUP BY 1, 2 ORDER BY 1 DESC, 2"
echo "== processed_events"
q "SELECT kind, outcome, count(*) FROM processed_events GROUP BY 1, 2 ORDER BY 1, 2"
