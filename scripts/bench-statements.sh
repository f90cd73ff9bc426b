#!/usr/bin/env bash
# Where a replay's database time goes, per statement: replays the sample file with ONE
# worker into a fresh database with pg_stat_statements, then lists the statements by
# total time. Postgres must load the extension (shared_preload_libraries =
# 'pg_stat_statements' in .local/postgres/data/postgresql.conf, then restart it with
# scripts/services.sh stop-postgres && scripts/services.sh start-postgres).
#
#   scripts/bench-statements.sh [BINARY=this build] [N=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
binary=$(realpath "${1:-$bin}")
file=$(sample_events "${2:-100000}")
url=$(fresh_db kcs_statements)
psql "$url" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
KEYCLOAK_SYNC__DATABASE__URL=$url "$binary" migrate
psql "$url" -qc "SELECT pg_stat_statements_reset()" >/dev/null
KEYCLOAK_SYNC__DATABASE__URL=$url /usr/bin/time -f "replay: %e s wall, %U s user CPU" \
  "$binary" replay "$file" --batch-size 500 --workers 1 --no-migrate >/dev/null
psql "$url" -c "SELECT round(total_exec_time::numeric) AS ms, calls,
                       left(regexp_replace(query, '\s+', ' ', 'g'), 70) AS statement
                FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 10"
