#!/usr/bin/env bash
# A throwaway PostgreSQL 15 primary and a streaming replica for the tests and examples.
#   scripts/pg-test-cluster.sh start   # installs postgresql-15 if missing, starts both, prints the env lines
#   scripts/pg-test-cluster.sh env     # prints ASYNCDB_PG_PRIMARY='...' ASYNCDB_PG_REPLICA='...' (exit 1 if down)
#   eval "$(scripts/pg-test-cluster.sh env)"   # sets them in the calling shell
#   scripts/pg-test-cluster.sh stop    # stops both by pid and removes the folder
#   scripts/pg-test-cluster.sh restart [primary|replica|both]   # pg_ctl restart -m fast, back when it accepts connections
#   scripts/pg-test-cluster.sh pause|resume [primary|replica|both]  # the two halves of a restart: pg_ctl stop -m
#                                      # fast (data kept), pg_ctl start; for tests that look at the server gone
# Both servers listen on 127.0.0.1 only and on a private socket folder, run as the `postgres` user (initdb
# refuses root) with trust authentication, and live in ASYNCDB_PG_DIR (default /tmp/asyncdb-pg-<uid>).
# start and stop are idempotent. Ports: ASYNCDB_PG_PORT (default 25432) and the next one for the replica; below
# Linux's ephemeral range (32768-60999), where an outgoing connection may already hold the port.
set -euo pipefail

base=${ASYNCDB_PG_DIR:-/tmp/asyncdb-pg-$(id -u)}
port=${ASYNCDB_PG_PORT:-25432}
replica_port=$((port + 1))
bin=${ASYNCDB_PG_BIN:-/usr/lib/postgresql/15/bin}
db=asyncdb_test
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/cleanup.sh"

conninfo() { echo "host=127.0.0.1 port=$1 dbname=$db user=postgres connect_timeout=5"; }

as_postgres() {
  # From /: the caller's folder may be one the postgres user cannot enter.
  if [[ $(id -un) == postgres ]]; then "$@"; else (cd / && runuser -u postgres -- "$@"); fi
}

start_failed() {  # start_failed <primary|replica>: says why (the log goes with the folder at stop), then fails
  echo "pg-test-cluster: the $1 did not start on port $port (replica $replica_port); its log ends:" >&2
  tail -n 20 "$base/$1.log" >&2 || true
  exit 1
}

running() {  # running <data dir>: the postmaster of that folder is alive
  [[ -f $1/postmaster.pid ]] && kill -0 "$(head -1 "$1/postmaster.pid")" 2>/dev/null
}

print_env() {
  # Quoted, so that `eval "$(scripts/pg-test-cluster.sh env)"` sets them.
  echo "ASYNCDB_PG_PRIMARY='$(conninfo "$port")'"
  echo "ASYNCDB_PG_REPLICA='$(conninfo "$replica_port")'"
  echo "ASYNCDB_PG_DIR='$base'"
}

stop_one() {  # stop_one <data dir>: immediate shutdown by pid (the data is thrown away), at most 30 s, then SIGKILL
  local dir=$1 pid
  running "$dir" || return 0
  pid=$(head -1 "$dir/postmaster.pid")
  kill -QUIT "$pid" 2>/dev/null || true
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "pg-test-cluster: $dir did not stop in 30 s; killing $pid" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

start() {
  if [[ ! -x $bin/initdb ]]; then
    "$here/install-deps.sh" postgresql-15 || {
      echo "pg-test-cluster: PostgreSQL 15 is not installed and cannot be installed" >&2
      exit 3
    }
  fi
  if running "$base/primary" && running "$base/replica"; then
    print_env
    return 0
  fi
  stop_both
  # A start that fails or is interrupted half way (Ctrl-C during pg_basebackup) leaves no server behind.
  on_exit stop_unless_started
  mkdir -p "$base"
  chown postgres: "$base" 2>/dev/null || true
  chmod 700 "$base"
  as_postgres "$bin/initdb" -D "$base/primary" --auth=trust --no-sync -U postgres >"$base/initdb.log" 2>&1 || {
    cat "$base/initdb.log" >&2
    exit 1
  }
  cat >>"$base/primary/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$base'
fsync = off
full_page_writes = off
wal_level = replica
max_wal_senders = 4
max_connections = 100
hot_standby = on
hot_standby_feedback = on
EOF
  as_postgres "$bin/pg_ctl" -D "$base/primary" -l "$base/primary.log" -w -t 30 start >/dev/null || start_failed primary
  as_postgres "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"
  as_postgres "$bin/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$base/replica" -R -X stream -c fast
  echo "port = $replica_port" >>"$base/replica/postgresql.conf"
  as_postgres "$bin/pg_ctl" -D "$base/replica" -l "$base/replica.log" -w -t 30 start >/dev/null || start_failed replica
  started=1
  print_env
}

stop_both() {
  stop_one "$base/replica"
  stop_one "$base/primary"
  rm -rf "$base"
}

started=0
stop_unless_started() { ((started)) || stop_both; }

servers() {  # servers <primary|replica|both>: the data folders, in the order a restart takes them
  case ${1:-both} in
    primary) echo "$base/primary" ;;
    replica) echo "$base/replica" ;;
    both) echo "$base/primary $base/replica" ;;
    *)
      echo "pg-test-cluster: primary, replica or both, not '$1'" >&2
      exit 2
      ;;
  esac
}

pg_ctl_each() {  # pg_ctl_each <pg_ctl command> <which>: on each server, waiting (at most 30 s) until it is done
  local cmd=$1 dir
  for dir in $(servers "${2:-both}"); do
    [[ -d $dir ]] || { echo "pg-test-cluster: no cluster in $base (start it first)" >&2; exit 1; }
    # -w: start and restart return once the server accepts connections, stop once it has exited.
    as_postgres "$bin/pg_ctl" -D "$dir" -l "$dir.log" -m fast -w -t 30 "$cmd" >/dev/null
  done
}

case ${1:-} in
  start) start ;;
  stop) stop_both ;;
  restart) pg_ctl_each restart "${2:-both}" ;;
  pause) pg_ctl_each stop "${2:-both}" ;;
  resume) pg_ctl_each start "${2:-both}" ;;
  env)
    running "$base/primary" || { echo "pg-test-cluster: not running (start it first)" >&2; exit 1; }
    print_env
    ;;
  *)
    echo "usage: $0 start|stop|env|restart|pause|resume [primary|replica|both]" >&2
    exit 2
    ;;
esac
