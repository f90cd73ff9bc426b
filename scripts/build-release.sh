#!/usr/bin/env bash
# The release build of the daemon: the one command the container image and CI both run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin keycloak-sync
