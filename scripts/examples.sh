#!/usr/bin/env bash
# Builds every example with the dev preset and runs them in order (examples/NN_*.cpp), each in a fresh
# folder under build/dev/examples/run/, then starts the web service (examples/users_service), calls each
# endpoint once with curl, prints the answers and stops it. Stops at the first failure. Rerunnable.
# Every server it starts (PostgreSQL primary and replica, the service) is stopped on any exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/cleanup.sh

./scripts/install-deps.sh cmake ninja-build g++ libsqlitecpp-dev libasio-dev libboost1.81-dev catch2 \
  librestinio-dev nlohmann-json3-dev libcpp-jwt-dev libssl-dev prometheus-cpp-dev curl sqlite3

count=$(find examples -maxdepth 1 -name '[0-9][0-9]_*.cpp' ! -name '11_postgres.cpp' | wc -l)
cmake --preset dev
if ! cmake --build --preset dev --target run_examples users_service; then
  echo "examples.sh: an example failed to build or run (see above)" >&2
  exit 1
fi

# 11_postgres: against a throwaway primary and replica, started here and stopped by pid on exit.
./scripts/install-deps.sh libpqxx-dev pkg-config postgresql-15 || echo "examples.sh: cannot install PostgreSQL" >&2
cmake --preset dev >/dev/null
if cmake --build --preset dev --target example_11_postgres 2>/dev/null; then
  # Outside the checkout: the servers run as the postgres user, who may not be allowed to enter it.
  export ASYNCDB_PG_DIR=${ASYNCDB_PG_DIR:-/tmp/asyncdb-pg-examples-$(id -u)} ASYNCDB_PG_PORT=${ASYNCDB_PG_PORT:-25442}
  on_exit ./scripts/pg-test-cluster.sh stop
  eval "$(./scripts/pg-test-cluster.sh start)"
  export ASYNCDB_PG_PRIMARY ASYNCDB_PG_REPLICA
  echo "== 11_postgres"
  if ! build/dev/examples/11_postgres; then
    echo "examples.sh: 11_postgres failed" >&2
    exit 1
  fi
  count=$((count + 1))
else
  echo "examples.sh: 11_postgres skipped: libpqxx not found" >&2
fi
echo
echo "examples: ${count} passed, 0 failed"

# The web service, once through: seed, token, each endpoint, SIGTERM.
bin=build/dev/examples/users_service/users_service
run=build/dev/examples/run/users_service
rm -rf "$run" && mkdir -p "$run"
head -c 32 /dev/urandom | base64 >"$run/secret"
"$bin" seed --db "$run/users.db" --users 3
"$bin" serve --db "$run/users.db" --listen 127.0.0.1:0 --secret-file "$run/secret" >"$run/out" 2>"$run/err" &
pid=$!
on_exit stop_pid "$pid"
for _ in $(seq 500); do grep -q '^listening on' "$run/out" && break; sleep 0.02; done
grep -q '^listening on' "$run/out" || { echo "examples.sh: the service did not start" >&2; cat "$run/err" >&2; exit 1; }
url=$(sed 's/^listening on //' "$run/out")
echo
echo "== users_service $(cat "$run/out")"
token=$("$bin" token --db "$run/users.db" --secret-file "$run/secret" --user seed1)
show() {
  echo "\$ curl $*"
  curl -sS -w '  -> %{http_code}\n' "$@"
}
show "$url/health"
show -H "Authorization: Bearer $token" "$url/me/async"
show -H "Authorization: Bearer $token" --data-binary \
  '[{"name":"ann","email":"ann@example.org"},{"name":"bob","email":"bob@example.org","is_active":false}]' \
  "$url/users/batch-async"
show -H "Authorization: Bearer $token" "$url/users/async?skip=0&limit=10"
show -H "Authorization: Bearer $token" "$url/users/stats/async"
show "$url/me/async"
echo "\$ curl $url/metrics | grep -E '^asyncdb_operations_total|^http_server_request_duration_seconds_count'"
curl -sS "$url/metrics" | grep -E '^asyncdb_operations_total|^http_server_request_duration_seconds_count'
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
((status == 0)) || { echo "examples.sh: the service exited $status after SIGTERM" >&2; exit 1; }
echo "users_service: stopped by SIGTERM, exit 0"
