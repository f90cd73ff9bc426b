#!/usr/bin/env bash
# The whole test suite: starts the local Postgres and RabbitMQ (installing them if
# needed), builds and tests the Java provider (keycloak-spi/, Maven), starts a real
# Keycloak with it (scripts/keycloak.sh), checks formatting and lints, runs the TypeScript
# client's tests (clients/typescript, node --test), then every Rust test with
# cargo-nextest (installed if missing): unit, integration (tests/it) and end to end
# against Keycloak (tests/e2e). Ends with the test runner's summary.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up
eval "$(scripts/services.sh env)"

echo "== keycloak-spi (Java provider): build and JUnit tests"
keycloak-spi/build.sh

# Keycloak starts (tens of seconds cold) while the Rust side is checked and built.
echo "== Keycloak (scripts/keycloak.sh up), in the background"
scripts/keycloak.sh up >.local/keycloak-up.log 2>&1 &
keycloak_up=$!
# The three-node RabbitMQ cluster of tests/it/cluster.rs.
scripts/services.sh cluster up
eval "$(scripts/services.sh cluster env)"

if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

# Databases left behind by an interrupted earlier run.
psql "$KCS_TEST_DATABASE_URL" -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'kcs_test_%'" |
  while read -r name; do
    [ -n "$name" ] && psql "$KCS_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null
  done

# Queues left behind by earlier runs (each test declares its own): past a few hundred the
# local broker slows to a halt, so it starts afresh then. A new machine has none.
leftover=$(timeout 60 rabbitmqctl -n "$KCS_RABBITMQ_NODE" -q list_queues name 2>/dev/null | grep -c '^kcs-' || true)
if [ "${leftover:-0}" -gt 200 ] || ! timeout 60 rabbitmqctl -n "$KCS_RABBITMQ_NODE" -q status >/dev/null 2>&1; then
  echo "== resetting the local RabbitMQ (${leftover:-?} queues left by earlier runs)"
  scripts/services.sh reset-rabbitmq
fi

in_cluster=$(timeout 60 rabbitmqctl -n kcs-cluster-1@localhost -q list_queues name 2>/dev/null | grep -c '^kcs-' || true)
if [ "${in_cluster:-0}" -gt 200 ]; then
  echo "== resetting the RabbitMQ cluster (${in_cluster} queues left by earlier runs)"
  scripts/services.sh cluster reset
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== release build (the command the container image runs)"
scripts/build-release.sh

echo "== deployment files: linters"
scripts/lint-deploy.sh

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest (crates.io)"
  cargo install --locked --quiet cargo-nextest
fi

echo "== waiting for Keycloak"
if ! wait "$keycloak_up"; then
  cat .local/keycloak-up.log
  exit 1
fi
cat .local/keycloak-up.log
eval "$(scripts/keycloak.sh env)"

echo "== TypeScript client (clients/typescript): tsc --noEmit, node --test"
KCS_BIN="$PWD/target/release/keycloak-sync" clients/typescript/test.sh

echo "== Rust tests"
cargo nextest run --locked --no-fail-fast
