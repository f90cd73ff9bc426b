#!/usr/bin/env bash
# The TypeScript client's checks and tests: dependencies from package-lock.json, strict
# `tsc --noEmit`, then `npm test` (node --test) against the real keycloak-sync binary,
# Postgres, RabbitMQ and Keycloak — the environment of scripts/services.sh and
# scripts/keycloak.sh (`env`), as scripts/test.sh sets it.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "clients/typescript: Node.js 20+ with npm is needed and not installed (Debian 12's nodejs is 18)" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "clients/typescript: Node.js 20+ is needed, this machine has $(node --version)" >&2
  exit 1
fi

# --ignore-scripts: no install script of a dependency runs (Prisma's would try to download
# its engines, which its `validate` does not need); the build is `npm test`'s own.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
npx --no-install tsc -p tsconfig.json --noEmit
rm -rf dist   # nothing stale from an earlier build is tested
npm test --silent
