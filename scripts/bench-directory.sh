#!/usr/bin/env bash
# Groups, roles and organizations: replay throughput of a role/group-heavy history (about
# half of its events admin changes to memberships, role grants, groups, roles and
# organizations: `keycloak-sync sample --directory-weight 300`) side by side with the
# ordinary history of the same size, rounds alternating, each into a fresh database.
#
#   scripts/bench-directory.sh [N=100000] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-100000}
rounds=${2:-3}

. scripts/bench-common.sh
ordinary=$(sample_events "$events")
heavy="$work/events-$events-directory.jsonl"
[ -s "$heavy" ] || "$bin" sample --events "$events" --users $((events / 40)) --seed 42 \
  --directory-weight 300 >"$heavy"

rate() { # FILE → events/s
  local url
  url=$(fresh_db kcs_bench_directory)
  KEYCLOAK_SYNC__DATABASE__URL=$url KEYCLOAK_SYNC__LOG__LEVEL=warn "$bin" migrate
  KEYCLOAK_SYNC__DATABASE__URL=$url KEYCLOAK_SYNC__LOG__LEVEL=warn \
    "$bin" replay "$1" --batch-size 500 --workers 2 --no-migrate 2>/dev/null |
    sed -nE 's/^replay summary: .*, ([0-9]+) events\/s\)$/\1/p'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

machine
directory_share=$(grep -cE '"(GROUP|GROUP_MEMBERSHIP|REALM_ROLE|CLIENT_ROLE|REALM_ROLE_MAPPING|CLIENT_ROLE_MAPPING|ORGANIZATION|ORGANIZATION_MEMBERSHIP)"' "$heavy" || true)
echo "ordinary: $ordinary ($events events)"
echo "heavy:    $heavy ($events events, $directory_share of them about groups, roles and organizations)"
a=() b=()
for _ in $(seq "$rounds"); do
  a+=("$(rate "$ordinary")")
  b+=("$(rate "$heavy")")
  echo "  ordinary ${a[-1]} events/s, role/group-heavy ${b[-1]} events/s"
done
echo "ordinary:        median $(printf '%s\n' "${a[@]}" | median) events/s (runs: ${a[*]})"
echo "role/group-heavy: median $(printf '%s\n' "${b[@]}" | median) events/s (runs: ${b[*]})"
