#!/usr/bin/env bash
# `sessions expire` over SESSIONS open sessions of which DUE are past their expiry, and
# replay throughput of EVENTS sample events while that pass runs vs without it, side by
# side in the same run (each replay into its own fresh database next to the 1M sessions).
#
#   scripts/bench-expiry.sh [SESSIONS=1000000] [DUE=100000] [EVENTS=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
sessions=${1:-1000000}
due=${2:-100000}
events=${3:-100000}

. scripts/bench-common.sh
file=$(sample_events "$events")
export KEYCLOAK_SYNC__LOG__LEVEL=warn KEYCLOAK_SYNC__SESSIONS__REALM_POLICIES="bench-realm=1800:36000"

# A database with SESSIONS open sessions of realm bench-realm, DUE of them long idle, and
# the realm's policy already stored (as configuration gives it), so the pass only ends.
seeded_db() {
  local url
  url=$(fresh_db "$1")
  KEYCLOAK_SYNC__DATABASE__URL=$url "$bin" migrate
  psql "$url" -q <<SQL
SET search_path = keycloak_sync;
INSERT INTO realm_session_policies (realm_id, idle_secs, max_lifespan_secs, idle_remember_me_secs,
    max_lifespan_remember_me_secs, idle_grace_secs, expiry_margin_secs, source)
VALUES ('bench-realm', 1800, 36000, 1800, 36000, 120, 300, 'config');
INSERT INTO user_sessions (id, realm_id, user_id, client_id, started_at, last_activity_at)
SELECT 'bench-s-' || n, 'bench-realm', 'bench-u-' || (n % 100000), 'web',
       CASE WHEN n <= $due THEN now() - interval '3 hours' ELSE now() - interval '5 minutes' END,
       CASE WHEN n <= $due THEN now() - interval '3 hours' ELSE now() - interval '5 minutes' END
FROM generate_series(1, $sessions) AS n;
UPDATE user_sessions s SET expires_at = session_expiry(s.started_at, s.last_activity_at, s.remember_me, p)
FROM realm_session_policies p WHERE p.realm_id = s.realm_id;
VACUUM ANALYZE user_sessions;
SQL
  echo "$url"
}

replay_rate() { # URL → events/s
  KEYCLOAK_SYNC__DATABASE__URL=$1 "$bin" replay "$file" --batch-size 500 --workers 2 --no-migrate 2>/dev/null |
    sed -nE 's/^replay summary: .*, ([0-9]+) events\/s\)$/\1/p'
}

machine
echo "seeding $sessions sessions ($due due) twice…"
alone=$(seeded_db kcs_expiry_alone)
during=$(seeded_db kcs_expiry_during)

start=$(date +%s.%N)
KEYCLOAK_SYNC__DATABASE__URL=$alone "$bin" sessions expire | tee "$work/expiry-alone.txt"
end=$(date +%s.%N)
echo "sessions expire alone: $(echo "$end - $start" | bc) s"

rate_without=$(replay_rate "$alone")

KEYCLOAK_SYNC__DATABASE__URL=$during "$bin" sessions expire >"$work/expiry-during.txt" &
pass=$!
rate_with=$(replay_rate "$during")
wait "$pass"
cat "$work/expiry-during.txt"

echo "replay of $events events without a pass: $rate_without events/s"
echo "replay of $events events while the pass runs: $rate_with events/s"
