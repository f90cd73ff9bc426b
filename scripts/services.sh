#!/usr/bin/env bash
# Installs (Debian packages) and starts a private Postgres and RabbitMQ on loopback, with
# their data under .local/ of this checkout, and two PgBouncers in front of that Postgres
# (transaction and session pooling, as managed offerings run them). Safe to run again:
# what is installed or already running is left alone.
#
#   scripts/services.sh up      install if needed, start, wait until both answer
#   scripts/services.sh down    stop both
#   scripts/services.sh status  say what is running
#   scripts/services.sh env     print the environment variables that point at them
#   scripts/services.sh stop-postgres|start-postgres|stop-rabbitmq|start-rabbitmq
#                               take one service away and back (outage drills, tests)
#   scripts/services.sh restart-pgbouncer
#                               restart the transaction-mode PgBouncer (fault drills)
#   scripts/services.sh reset-rabbitmq
#                               the broker again with an empty state (test.sh does so
#                               when earlier runs left too many queues)
#   scripts/services.sh cluster up|down|status|env|reset
#                               a three-node RabbitMQ cluster on loopback (node i listens
#                               on KCS_CLUSTER_PORT+i, default 56740+i), apart from the
#                               single broker above
#   scripts/services.sh cluster stop-node I|start-node I
#                               take node I (1-3) of the cluster away and back
#
# Ports can be moved with KCS_PG_PORT and KCS_AMQP_PORT, the data with KCS_STATE_DIR; the
# PgBouncers listen on KCS_PG_PORT+1 (transaction mode) and KCS_PG_PORT+2 (session mode).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state="${KCS_STATE_DIR:-$root/.local}"
pg_port=${KCS_PG_PORT:-54329}
amqp_port=${KCS_AMQP_PORT:-56729}
bouncer_tx_port=$((pg_port + 1))
bouncer_session_port=$((pg_port + 2))
node="keycloak-sync-${amqp_port}@localhost"
pg_bin=$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1 || true)

log() { printf '[services] %s\n' "$*" >&2; }

as_user() {
  local user=$1
  shift
  if [ "$(id -un)" = "$user" ]; then "$@"; else runuser -u "$user" -- "$@"; fi
}

install_packages() {
  local missing=()
  [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || missing+=(postgresql)
  command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
  command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
    # Debian starts the packaged services on install where it can; ours run on their own ports.
    pg_bin=$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1)
  fi
}

pg_running() { "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" 2>/dev/null; }

start_postgres() {
  local data="$state/postgres/data"
  if pg_running; then
    log "postgres already running on 127.0.0.1:$pg_port"
    return
  fi
  mkdir -p "$state/postgres"
  chown postgres: "$state/postgres"
  if [ ! -s "$data/PG_VERSION" ]; then
    log "initialising postgres cluster in $data"
    as_user postgres "$pg_bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$state/postgres'
max_connections = 300
shared_buffers = 256MB
logging_collector = off
EOF
  fi
  log "starting postgres on 127.0.0.1:$pg_port"
  as_user postgres "$pg_bin/pg_ctl" -D "$data" -l "$state/postgres/server.log" -w -t 60 start >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

amqp_running() {
  (exec 3<>"/dev/tcp/127.0.0.1/$amqp_port") 2>/dev/null
}

# launch_rabbit BASE PORT NODE PLUGINS: starts one RabbitMQ node in the background, its
# data and logs under BASE, listening on 127.0.0.1:PORT (Erlang distribution on
# PORT+1000). Does not wait: a clustered node only opens its port once its peers answer.
launch_rabbit() {
  local base=$1 port=$2 name=$3 plugins=$4
  mkdir -p "$base/mnesia" "$base/log"
  [ -f "$base/enabled_plugins" ] || echo "[$plugins]." >"$base/enabled_plugins"
  {
    echo "listeners.tcp.1 = 127.0.0.1:$port"
    echo "loopback_users = none"
    if [ -n "$plugins" ]; then
      echo "management.tcp.ip = 127.0.0.1"
      echo "management.tcp.port = $((port + 1))"
    fi
  } >"$base/rabbitmq.conf"
  chown -R rabbitmq: "$base"
  log "starting rabbitmq on 127.0.0.1:$port (node $name)"
  (
    cd "$base"
    export RABBITMQ_MNESIA_BASE="$base/mnesia" RABBITMQ_LOG_BASE="$base/log" \
      RABBITMQ_NODENAME="$name" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
      RABBITMQ_NODE_PORT="$port" RABBITMQ_DIST_PORT="$((port + 1000))" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" \
      RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf" HOME=/var/lib/rabbitmq
    setsid runuser -u rabbitmq -- /usr/lib/rabbitmq/bin/rabbitmq-server \
      >"$base/log/stdout.log" 2>&1 </dev/null &
    echo $! >"$base/launcher.pid"
  )
}

# await_rabbit BASE PORT NODE: waits until the node launched above accepts AMQP.
await_rabbit() {
  local base=$1 port=$2 name=$3
  for _ in $(seq 1 180); do
    port_open "$port" && break
    kill -0 "$(cat "$base/launcher.pid")" 2>/dev/null || break
    sleep 1
  done
  port_open "$port" || { log "rabbitmq $name did not start; see $base/log"; tail -n 30 "$base/log/stdout.log" >&2; exit 1; }
  rabbitmqctl -n "$name" await_startup >/dev/null
}

# kill_rabbit NODE: stops a node, or kills it when it no longer answers (its node name is
# in its environment).
kill_rabbit() {
  local name=$1
  if ! timeout 30 rabbitmqctl -n "$name" stop >/dev/null 2>&1; then
    for pid in $(pgrep -u rabbitmq beam.smp || true); do
      grep -qz "^RABBITMQ_NODENAME=$name\$" "/proc/$pid/environ" 2>/dev/null && kill -9 "$pid"
    done
  fi
}

start_rabbitmq() {
  if amqp_running; then
    log "rabbitmq already running on 127.0.0.1:$amqp_port"
    return
  fi
  launch_rabbit "$state/rabbitmq" "$amqp_port" "$node" rabbitmq_management
  await_rabbit "$state/rabbitmq" "$amqp_port" "$node"
}

# The three-node cluster: node I is kcs-cluster-I@localhost on cluster_port+I.
cluster_port=${KCS_CLUSTER_PORT:-56740}
cluster_node() { echo "kcs-cluster-$1@localhost"; }
cluster_base() { echo "$state/cluster/$1"; }

cluster_start_node() {
  local i=$1
  port_open $((cluster_port + i)) && return
  launch_rabbit "$(cluster_base "$i")" $((cluster_port + i)) "$(cluster_node "$i")" ""
}

cluster_members() {
  rabbitmqctl -n "$(cluster_node 1)" -q cluster_status --formatter json 2>/dev/null |
    grep -o '"running_nodes":\[[^]]*\]' || true
}

cluster_up() {
  # All at once: a node that was clustered waits at boot for the others.
  for i in 1 2 3; do cluster_start_node "$i"; done
  for i in 1 2 3; do await_rabbit "$(cluster_base "$i")" $((cluster_port + i)) "$(cluster_node "$i")"; done
  for i in 2 3; do
    if ! cluster_members | grep -q "$(cluster_node "$i")"; then
      log "joining $(cluster_node "$i") to $(cluster_node 1)"
      {
        rabbitmqctl -n "$(cluster_node "$i")" -q stop_app
        rabbitmqctl -n "$(cluster_node "$i")" -q reset
        rabbitmqctl -n "$(cluster_node "$i")" -q join_cluster "$(cluster_node 1)"
        rabbitmqctl -n "$(cluster_node "$i")" -q start_app
      } >>"$(cluster_base "$i")/log/join.log" 2>&1
    fi
  done
  rabbitmqctl -n "$(cluster_node 1)" await_online_nodes 3 >/dev/null
  log "cluster ready: $(cluster_members)"
}

cluster_env() {
  local urls=() nodes=()
  for i in 1 2 3; do
    urls+=("amqp://guest:guest@127.0.0.1:$((cluster_port + i))/%2f")
    nodes+=("$(cluster_node "$i")")
  done
  local IFS=,
  echo "export KCS_TEST_CLUSTER_URLS=${urls[*]}"
  echo "export KCS_TEST_CLUSTER_NODES=${nodes[*]}"
}

cluster() {
  case "${1:-up}" in
    up) install_packages; cluster_up ;;
    down) for i in 3 2 1; do port_open $((cluster_port + i)) && kill_rabbit "$(cluster_node "$i")"; done; log "cluster stopped" ;;
    status)
      for i in 1 2 3; do
        port_open $((cluster_port + i)) && echo "$(cluster_node "$i"): running on 127.0.0.1:$((cluster_port + i))" ||
          echo "$(cluster_node "$i"): stopped"
      done
      ;;
    env) cluster_env ;;
    reset)
      for i in 3 2 1; do kill_rabbit "$(cluster_node "$i")"; done
      for i in 1 2 3; do
        for _ in $(seq 1 30); do port_open $((cluster_port + i)) || break; sleep 1; done
        rm -rf "$(cluster_base "$i")/mnesia"
      done
      cluster_up
      ;;
    stop-node) kill_rabbit "$(cluster_node "${2:?node 1-3}")" ;;
    start-node)
      cluster_start_node "${2:?node 1-3}"
      await_rabbit "$(cluster_base "$2")" $((cluster_port + $2)) "$(cluster_node "$2")"
      ;;
    *) echo "usage: $0 cluster up|down|status|env|reset|stop-node I|start-node I" >&2; exit 2 ;;
  esac
}

# start_pgbouncer MODE PORT: a PgBouncer (Debian's, 1.18) in pool mode MODE in front of
# the Postgres above, for every database name, as the postgres user.
start_pgbouncer() {
  local mode=$1 port=$2 dir="$state/pgbouncer-$1"
  if port_open "$port"; then
    log "pgbouncer ($mode pooling) already running on 127.0.0.1:$port"
    return
  fi
  mkdir -p "$dir"
  echo '"postgres" ""' >"$dir/users.txt"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$pg_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = $mode
max_client_conn = 500
default_pool_size = 20
ignore_startup_parameters = extra_float_digits,search_path,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
  chown -R postgres: "$dir"
  log "starting pgbouncer ($mode pooling) on 127.0.0.1:$port"
  as_user postgres pgbouncer -d "$dir/pgbouncer.ini"
  for _ in $(seq 1 50); do
    port_open "$port" && return
    sleep 0.1
  done
  log "pgbouncer did not start; see $dir/pgbouncer.log"
  exit 1
}

stop_pgbouncer() {
  local pidfile="$state/pgbouncer-$1/pgbouncer.pid"
  if [ -s "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$(cat "$pidfile")" 2>/dev/null || break
      sleep 0.1
    done
  fi
}

print_env() {
  cat <<EOF
export KEYCLOAK_SYNC__DATABASE__URL=postgres://postgres@127.0.0.1:$pg_port/keycloak_sync
export KEYCLOAK_SYNC__AMQP__URL=amqp://guest:guest@127.0.0.1:$amqp_port/%2f
export KCS_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/postgres
export KCS_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$amqp_port/%2f
export KCS_RABBITMQ_NODE=$node
export KCS_TEST_PGBOUNCER_TX_URL=postgres://postgres@127.0.0.1:$bouncer_tx_port/postgres
export KCS_TEST_PGBOUNCER_SESSION_URL=postgres://postgres@127.0.0.1:$bouncer_session_port/postgres
EOF
}

case "${1:-up}" in
  up)
    install_packages
    start_postgres
    start_rabbitmq
    start_pgbouncer transaction "$bouncer_tx_port"
    start_pgbouncer session "$bouncer_session_port"
    as_user postgres psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'keycloak_sync'" | grep -q 1 ||
      as_user postgres psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE keycloak_sync" >/dev/null
    log "ready"
    ;;
  down)
    stop_pgbouncer transaction
    stop_pgbouncer session
    if pg_running; then as_user postgres "$pg_bin/pg_ctl" -D "$state/postgres/data" -m fast -w stop >/dev/null; fi
    if amqp_running; then rabbitmqctl -n "$node" stop >/dev/null || true; fi
    log "stopped"
    ;;
  status)
    pg_running && echo "postgres: running on 127.0.0.1:$pg_port" || echo "postgres: stopped"
    amqp_running && echo "rabbitmq: running on 127.0.0.1:$amqp_port" || echo "rabbitmq: stopped"
    port_open "$bouncer_tx_port" && echo "pgbouncer (transaction): running on 127.0.0.1:$bouncer_tx_port" || echo "pgbouncer (transaction): stopped"
    port_open "$bouncer_session_port" && echo "pgbouncer (session): running on 127.0.0.1:$bouncer_session_port" || echo "pgbouncer (session): stopped"
    ;;
  env) print_env ;;
  stop-postgres) as_user postgres "$pg_bin/pg_ctl" -D "$state/postgres/data" -m fast -w stop >/dev/null ;;
  start-postgres) start_postgres ;;
  stop-rabbitmq) rabbitmqctl -n "$node" stop_app >/dev/null ;;
  start-rabbitmq) rabbitmqctl -n "$node" start_app >/dev/null ;;
  reset-rabbitmq)
    # A fresh broker state: what earlier test runs left (hundreds of quorum queues) goes.
    kill_rabbit "$node"
    for _ in $(seq 1 30); do amqp_running || break; sleep 1; done
    rm -rf "$state/rabbitmq/mnesia"
    start_rabbitmq
    ;;
  cluster) shift; cluster "$@" ;;
  restart-pgbouncer)
    stop_pgbouncer transaction
    start_pgbouncer transaction "$bouncer_tx_port"
    ;;
  *)
    echo "usage: $0 up|down|status|env|stop-postgres|start-postgres|stop-rabbitmq|start-rabbitmq|reset-rabbitmq|restart-pgbouncer|cluster ..." >&2
    exit 2
    ;;
esac
