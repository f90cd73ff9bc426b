# shellcheck shell=bash
# Shared by the bench-*.sh scripts (sourced): local services up, a release build, and
# helpers for fresh databases and sample event logs.

scripts/services.sh up >/dev/null 2>&1
eval "$(scripts/services.sh env)"
cargo build --release --locked --quiet
bin=$PWD/target/release/keycloak-sync
work=.local/bench
mkdir -p "$work"

machine() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Postgres $(psql "$KCS_TEST_DATABASE_URL" -tAc 'SHOW server_version' | cut -d' ' -f1)"
}

# fresh_db NAME → URL of a new, empty database
fresh_db() {
  psql "$KCS_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1
  psql "$KCS_TEST_DATABASE_URL" -qc "CREATE DATABASE $1" >/dev/null
  echo "${KCS_TEST_DATABASE_URL%/*}/$1"
}

# sample_events N [BINARY] → path of a generated log of N events (kept for later runs),
# written by BINARY's own sampler (default: this build), so an older build can be given
# the mix of events it knew
# (SAMPLE_ARGS adds sampler flags, e.g. "--directory-weight 300" for a group/role-heavy mix)
sample_events() {
  local maker=${2:-$bin} file extra=()
  read -r -a extra <<<"${SAMPLE_ARGS:-}"
  file="$work/events-$1${SAMPLE_ARGS:+-$(echo "$SAMPLE_ARGS" | tr -c 'a-z0-9' '_')}.jsonl"
  [ "$maker" = "$bin" ] || file="${file%.jsonl}-$(basename "$maker")-$(sha1sum "$maker" | cut -c1-8).jsonl"
  [ -s "$file" ] || "$maker" sample --events "$1" --users $(($1 / 40)) --seed 42 "${extra[@]}" >"$file"
  echo "$file"
}
