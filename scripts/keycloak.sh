#!/usr/bin/env bash
# A real Keycloak on loopback for the tests, the demo and the benchmarks: the server
# distribution from Maven Central (org.keycloak:keycloak-quarkus-dist, cached in ~/.m2 and
# unpacked under .local/keycloak/), its database on the Postgres of scripts/services.sh (a
# database of its own per version), the provider of keycloak-spi/ built and installed,
# publishing to the RabbitMQ of scripts/services.sh (exchange keycloak.events), and a
# bootstrap admin in the master realm. Safe to run again: what runs is left alone, unless
# the provider changed since it started (then it is restarted with the new one).
#
#   scripts/keycloak.sh up      fetch, build the provider, start, wait until Keycloak answers
#   scripts/keycloak.sh down    stop it gracefully (SIGTERM: the provider drains or spools)
#   scripts/keycloak.sh status  say whether it runs, its version, URL and pid
#   scripts/keycloak.sh env     print KEYCLOAK_URL, KEYCLOAK_ADMIN_USER, KEYCLOAK_ADMIN_PASSWORD
#   scripts/keycloak.sh logs    the server's log (follow with -f)
#   scripts/keycloak.sh kill    SIGKILL the server (kc.sh and its JVM; fault drills); `up` starts it again
#
# KCS_KEYCLOAK_VERSION picks the version (default: the newest Keycloak 26 release served);
# KCS_KEYCLOAK_PORT the HTTP port (default 58080; management on port+1000);
# KCS_KEYCLOAK_HEAP the maximum heap (default 768m); KCS_KEYCLOAK_AMQP_URL the broker the
# provider publishes to (default: the guest user of scripts/services.sh's RabbitMQ). Each
# port has its own database (keycloak_<version>_<port>; KCS_KEYCLOAK_DB names another, so
# that two instances share one, as the nodes of a cluster do), spool and log, so a second
# instance runs beside the first. KCS_KEYCLOAK_DB_KIND=dev-file runs it on Keycloak's
# embedded file database (H2, in the instance's own distribution) instead of Postgres. Needs scripts/services.sh up first (its ports are read
# from the same KCS_PG_PORT / KCS_AMQP_PORT).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=${KCS_KEYCLOAK_VERSION:-26.7.3}
port=${KCS_KEYCLOAK_PORT:-58080}
management_port=$((port + 1000))
heap=${KCS_KEYCLOAK_HEAP:-768m}
pg_port=${KCS_PG_PORT:-54329}
amqp_port=${KCS_AMQP_PORT:-56729}
state="${KCS_STATE_DIR:-$root/.local}/keycloak"
# A distribution per port: a second instance never re-augments or replaces the jars of a
# running one.
home="$state/keycloak-$version-$port"
run="$state/run-$port"
admin_user="admin"
admin_password="admin"
database=${KCS_KEYCLOAK_DB:-keycloak_${version//./_}_$port}
db_kind=${KCS_KEYCLOAK_DB_KIND:-postgres}
db_args=(--db=postgres --db-url="jdbc:postgresql://127.0.0.1:$pg_port/$database" --db-username=postgres --db-password=unused)
[ "$db_kind" = dev-file ] && db_args=(--db=dev-file)
amqp_url=${KCS_KEYCLOAK_AMQP_URL:-amqp://guest:guest@127.0.0.1:$amqp_port/%2f}
url="http://127.0.0.1:$port"

log() { printf '[keycloak] %s\n' "$*" >&2; }

# Keycloak 26.6+ supports Java 21 and 25 (17 still starts, deprecated): the newest JDK here.
java_home() {
  local candidate
  for candidate in /usr/lib/jvm/temurin-25* /usr/lib/jvm/*-25-* /usr/lib/jvm/temurin-21* /usr/lib/jvm/java-21-*; do
    [ -x "$candidate/bin/java" ] && { echo "$candidate"; return; }
  done
  if ! command -v java >/dev/null 2>&1; then
    log "installing a JDK (default-jdk-headless)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless >/dev/null
  fi
  dirname "$(dirname "$(readlink -f "$(command -v java)")")"
}

fetch() {
  [ -x "$home/bin/kc.sh" ] && return
  command -v mvn >/dev/null 2>&1 || {
    log "installing maven"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null
  }
  log "fetching org.keycloak:keycloak-quarkus-dist:$version (Maven Central, cached in ~/.m2)"
  # Each port downloads and unpacks in a directory of its own: instances started at once
  # never share a file.
  rm -rf "$home.unpack"
  mkdir -p "$home.unpack"
  mvn -B -q --no-transfer-progress dependency:copy \
    "-Dartifact=org.keycloak:keycloak-quarkus-dist:$version:tar.gz" "-DoutputDirectory=$home.unpack" >&2
  tar xzf "$home.unpack/keycloak-quarkus-dist-$version.tar.gz" -C "$home.unpack"
  rm -f "$home.unpack/keycloak-quarkus-dist-$version.tar.gz"
  mv "$home.unpack/keycloak-$version" "$home"
  rm -rf "$home.unpack"
  [ -x "$home/bin/kc.sh" ] || { log "the distribution did not unpack into $home"; exit 1; }
}

jar="$root/keycloak-spi/target/keycloak-sync-spi.jar"

# The provider's jar, built again when its sources are newer.
build_provider() {
  if [ ! -f "$jar" ] || [ -n "$(find "$root/keycloak-spi/src/main" "$root/keycloak-spi/pom.xml" -newer "$jar" -print -quit)" ]; then
    log "building the provider"
    # One build at a time when several instances start at once.
    mkdir -p "$state"
    flock "$state/provider-build.lock" "$root/keycloak-spi/build.sh" jar
  fi
}

install_provider() {
  build_provider
  # Keycloak re-augments at start when providers/ changed; an unchanged jar is left in
  # place, a changed one replaced by a rename (never rewritten under a running JVM).
  if ! cmp -s "$jar" "$home/providers/keycloak-sync-spi.jar"; then
    cp "$jar" "$home/providers/.keycloak-sync-spi.jar.new"
    mv "$home/providers/.keycloak-sync-spi.jar.new" "$home/providers/keycloak-sync-spi.jar"
  fi
}

pid() { [ -f "$run/pid" ] && kill -0 "$(cat "$run/pid")" 2>/dev/null && cat "$run/pid"; }

ready() { curl -sf -o /dev/null "http://127.0.0.1:$management_port/health/ready"; }

ensure_database() {
  local psql=(psql -h 127.0.0.1 -p "$pg_port" -U postgres -qtA)
  "${psql[@]}" -d postgres -c "SELECT 1" >/dev/null 2>&1 || {
    log "Postgres does not answer on 127.0.0.1:$pg_port: run scripts/services.sh up first"
    exit 1
  }
  if [ -z "$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$database'")" ]; then
    "${psql[@]}" -d postgres -c "CREATE DATABASE $database" >/dev/null
  fi
}

up() {
  if [ -n "$(pid)" ] && ready; then
    build_provider
    if cmp -s "$jar" "$home/providers/keycloak-sync-spi.jar"; then
      log "Keycloak $version already running at $url (pid $(pid))"
      return
    fi
    # A running Keycloak keeps the provider it started with.
    log "the provider changed: restarting Keycloak $version"
    down
  fi
  if [ -z "$(pid)" ]; then
    fetch
    install_provider
    [ "$db_kind" = dev-file ] || ensure_database
    mkdir -p "$run/spool"
    local jh
    jh=$(java_home)
    log "starting Keycloak $version at $url (Java: $jh, heap $heap, database ${KCS_KEYCLOAK_DB_KIND:-$database})"
    # Events of the whole suite flow through one exchange; each test binds its own queue.
    (
      cd "$home"
      export JAVA_HOME="$jh" PATH="$jh/bin:$PATH"
      export KC_BOOTSTRAP_ADMIN_USERNAME=$admin_user KC_BOOTSTRAP_ADMIN_PASSWORD=$admin_password
      export JAVA_OPTS_KC_HEAP="-Xms128m -Xmx$heap"
      exec nohup bin/kc.sh start \
        --http-enabled=true --http-host=127.0.0.1 --http-port="$port" \
        --http-management-port="$management_port" --health-enabled=true --metrics-enabled=true \
        --hostname-strict=false --cache=local \
        "${db_args[@]}" \
        --spi-events-listener--keycloak-sync--amqp-uri="$amqp_url" \
        --spi-events-listener--keycloak-sync--exchange=keycloak.events \
        --spi-events-listener--keycloak-sync--spool-dir="$run/spool" \
        "${sweep_args[@]}" \
        "${KCS_KEYCLOAK_EXTRA_ARGS[@]}" \
        >>"$run/keycloak.log" 2>&1
    ) &
    echo $! >"$run/pid"
  fi
  local waited=0
  until ready; do
    if [ -z "$(pid)" ]; then
      log "Keycloak exited during start; the end of $run/keycloak.log:"
      tail -n 40 "$run/keycloak.log" >&2
      exit 1
    fi
    [ $waited -ge 300 ] && { log "Keycloak did not become ready within 300 s"; exit 1; }
    sleep 1
    waited=$((waited + 1))
  done
  log "Keycloak $version ready at $url after ${waited} s"
}

down() {
  local p
  p=$(pid) || true
  if [ -z "$p" ]; then
    log "Keycloak is not running"
    return
  fi
  kill -TERM "$p"
  for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 1; done
  kill -0 "$p" 2>/dev/null && { log "Keycloak did not stop within 60 s; killing it"; kill -KILL "$p"; }
  rm -f "$run/pid"
  log "Keycloak stopped"
}

# How often Keycloak 26.5+ sweeps expired sessions (and reports each as USER_SESSION_DELETED);
# its default is 180 s, a local server sweeps every 60 s (the least it takes). Older servers
# lack the option.
sweep_args=()
case "$version" in
  26.[0-4].*) ;;
  *) sweep_args=(--spi-user-sessions--infinispan--session-expiration-period="${KCS_KEYCLOAK_SWEEP_SECS:-60}") ;;
esac
# Extra server options, e.g. KCS_KEYCLOAK_EXTRA_ARGS="--spi-...=1" (split on spaces).
read -r -a KCS_KEYCLOAK_EXTRA_ARGS <<<"${KCS_KEYCLOAK_EXTRA_ARGS:-}"

case "${1:-up}" in
  up) up ;;
  down) down ;;
  status)
    if p=$(pid); then
      echo "Keycloak $version: running at $url (pid $p$(ready && echo ', ready' || echo ', not ready'))"
    else
      echo "Keycloak $version: stopped"
    fi
    ;;
  env)
    cat <<EOF
export KEYCLOAK_URL=$url
export KEYCLOAK_ADMIN_USER=$admin_user
export KEYCLOAK_ADMIN_PASSWORD=$admin_password
export KCS_KEYCLOAK_VERSION=$version
EOF
    ;;
  logs) if [ "${2:-}" = -f ]; then tail -F "$run/keycloak.log"; else cat "$run/keycloak.log"; fi ;;
  kill)
    if p=$(pid); then
      # kc.sh runs the JVM as its child (after a build, it execs it): both go, at once.
      # (/proc read directly: procps may be missing on a minimal machine.)
      jvm=$(grep -lasz -- "^-Dkc.script.pid=$p\$" /proc/[0-9]*/cmdline | cut -d/ -f3 | grep -vx "$p" || true)
      # shellcheck disable=SC2086
      kill -KILL "$p" $jvm 2>/dev/null || true
      for q in $p $jvm; do while kill -0 "$q" 2>/dev/null; do sleep 0.1; done; done
      rm -f "$run/pid"
      log "Keycloak (pid $p${jvm:+, JVM $jvm}) killed"
    else
      log "Keycloak is not running"
    fi
    ;;
  *)
    echo "usage: $0 up|down|status|env|logs [-f]|kill" >&2
    exit 2
    ;;
esac
