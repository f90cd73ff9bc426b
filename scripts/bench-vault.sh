#!/usr/bin/env bash
# Vault benchmarks: token-message ingest through replay (sealing included) beside the
# same number of ordinary events in the same run, the bare cost of sealing, and key
# rotation speed.
#
#   scripts/bench-vault.sh [TOKENS=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
tokens=${1:-100000}

. scripts/bench-common.sh
key() { head -c 32 /dev/urandom | base64; }
KEYCLOAK_SYNC__VAULT__KEYS="old:$(key),new:$(key)"
export KEYCLOAK_SYNC__VAULT__KEYS KEYCLOAK_SYNC__LOG__LEVEL=warn

# Realistic shapes: ~1.2 kB JWT-sized tokens, a refresh and an offline token per user.
token_file="$work/tokens-$tokens.jsonl"
[ -s "$token_file" ] || awk -v n="$tokens" 'BEGIN {
  pad = ""; for (i = 0; i < 1150; i++) pad = pad "x";
  for (i = 0; i < n; i++) {
    type = (i % 2 == 0) ? "refresh" : "offline";
    printf "{\"schema\":1,\"kind\":\"token\",\"id\":\"tok-%d\",\"time\":%d,\"realmId\":\"r\",\"userId\":\"u%d\",\"sessionId\":\"s%d\",\"clientId\":\"web-app\",\"tokenType\":\"%s\",\"token\":\"eyJ%s.%d\",\"expiresAt\":4102444800000,\"metadata\":{\"email\":\"u%d@example.com\"}}\n", i, 1732270000000 + i, int(i / 2), i, type, pad, i, int(i / 2)
  }
}' >"$token_file"
event_file=$(sample_events "$tokens")

machine
url=$(fresh_db kcs_bench_vault)
tokens_run=$(KEYCLOAK_SYNC__DATABASE__URL=$url KEYCLOAK_SYNC__VAULT__ACTIVE_KEY=old "$bin" replay "$token_file" 2>/dev/null | grep '^replay summary')
events_run=$(KEYCLOAK_SYNC__DATABASE__URL=$(fresh_db kcs_bench_vault_events) KEYCLOAK_SYNC__VAULT__ACTIVE_KEY=old "$bin" replay "$event_file" 2>/dev/null | grep '^replay summary')
printf '%-28s %s\n' "token messages (sealed):" "$tokens_run" "ordinary events:" "$events_run"
echo "sealing alone (cargo bench --bench seal):"
cargo bench --locked --quiet --bench seal 2>/dev/null | grep '^seal'
echo "rotation of $tokens rows from key 'old' to key 'new':"
KEYCLOAK_SYNC__DATABASE__URL=$url KEYCLOAK_SYNC__VAULT__ACTIVE_KEY=new "$bin" vault rotate --batch-size 1000 | grep '^vault rotate summary'
