#!/usr/bin/env bash
# Reconcile and backfill throughput against the HTTP fake of Keycloak's Admin API, with
# page sizes 100 and 1000 side by side (release build, local Postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh up >/dev/null
eval "$(scripts/services.sh env)"
cargo test --release --locked --test it bench_admin -- --ignored --nocapture 2>&1 |
    grep -E "^(reconcile|backfill)|test result"
