#!/usr/bin/env bash
# `vault import` throughput: N application rows (one refresh token per user), imported as
# plaintext and as the legacy format (encrypted by Node, as applications do), against
# replaying the same tokens as token messages; each into a fresh database.
#
#   scripts/bench-import.sh [N=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-common.sh
n=${1:-100000}
KEYCLOAK_SYNC__VAULT__KEYS="k1:$(head -c 32 /dev/zero | tr '\0' '\7' | base64)"
export KEYCLOAK_SYNC__VAULT__KEYS
export KEYCLOAK_SYNC__VAULT__ACTIVE_KEY=k1 KEYCLOAK_SYNC__LOG__LEVEL=warn
export APP_TOKEN_KEY=bench-passphrase

source_url=$(fresh_db kcs_import_source)
psql "$source_url" -qc "CREATE TABLE accounts (\"userId\" text, \"refreshToken\" text, \"legacyToken\" text, \"updatedAt\" timestamptz)"
psql "$source_url" -qc "INSERT INTO accounts SELECT 'user-' || i, 'refresh-token-' || i || '-' || md5(i::text), NULL,
                          now() - make_interval(secs => i) FROM generate_series(1, $n) i"
# The legacy column, encrypted by Node's own crypto.
psql "$source_url" -tAc "SELECT \"userId\", \"refreshToken\" FROM accounts" |
  node -e '
const c = require("crypto"); const rl = require("readline").createInterface({input: process.stdin});
const key = c.scryptSync(process.env.APP_TOKEN_KEY, "session-tokens-salt", 32);
rl.on("line", (l) => { const [u, t] = l.split("|"); const iv = c.randomBytes(16);
  const ci = c.createCipheriv("aes-256-gcm", key, iv); const b = Buffer.concat([ci.update(t, "utf8"), ci.final()]);
  console.log(u + "\t" + iv.toString("hex") + ":" + ci.getAuthTag().toString("hex") + ":" + b.toString("hex")); });' \
  >"$work/legacy.tsv"
psql "$source_url" -q -c "CREATE TABLE legacy (u text, t text)" -c "\\copy legacy FROM '$work/legacy.tsv'" \
  -c "UPDATE accounts a SET \"legacyToken\" = l.t FROM legacy l WHERE l.u = a.\"userId\""
# The same tokens as token messages.
psql "$source_url" -tAc "SELECT json_build_object('schema', 1, 'kind', 'token', 'id', 'm-' || \"userId\",
    'time', (extract(epoch FROM \"updatedAt\") * 1000)::bigint, 'realmId', 'r', 'userId', \"userId\",
    'tokenType', 'refresh', 'token', \"refreshToken\") FROM accounts" >"$work/tokens.jsonl"

query() { # COLUMN
  echo "SELECT 'r' AS realm_id, \"userId\" AS user_id, 'refresh' AS token_type, \"$1\" AS token,
               \"updatedAt\" AS updated_at FROM accounts"
}
run() { # LABEL COMMAND...
  local label=$1 url start end
  shift
  url=$(fresh_db kcs_import_target)
  KEYCLOAK_SYNC__DATABASE__URL=$url "$bin" migrate
  start=$(date +%s.%N)
  KEYCLOAK_SYNC__DATABASE__URL=$url KEYCLOAK_SYNC_IMPORT_SOURCE_URL=$source_url "$@" >"$work/import.out"
  end=$(date +%s.%N)
  awk -v n="$n" -v s="$start" -v e="$end" -v l="$label" 'BEGIN { printf "%-44s %8.2f s %8.0f rows/s\n", l, e - s, n / (e - s) }'
  grep -h "summary" "$work/import.out" || true
}
machine
echo "rows: $n (one refresh token per user)"
run "vault import, plaintext" "$bin" vault import --query "$(query refreshToken)"
run "vault import, scrypt-aes256gcm-hex" "$bin" vault import --query "$(query legacyToken)" \
  --legacy-format scrypt-aes256gcm-hex --legacy-key-env APP_TOKEN_KEY
run "replay of the same tokens as messages" "$bin" replay "$work/tokens.jsonl" --no-migrate
