#!/usr/bin/env bash
# The change feed's cost: this checkout's release build with the feed on (A, the default)
# against the same build with `changes.enabled = false` (B), replay and daemon, rounds
# alternating, fresh database and queue each run (scripts/bench-compare.sh).
#
#   scripts/bench-feed.sh [N=100000] [ROUNDS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
off="$PWD/$work/keycloak-sync-feed-off"
printf '#!/bin/sh\nKEYCLOAK_SYNC__CHANGES__ENABLED=false exec %s "$@"\n' "$bin" >"$off"
chmod +x "$off"
exec scripts/bench-compare.sh "$off" "${1:-100000}" "${2:-5}"
