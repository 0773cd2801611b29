#!/usr/bin/env bash
# Builds asyncdb_pg_bench with the bench preset (g++ Release -O2), starts a throwaway PostgreSQL 15 primary
# (scripts/pg-test-cluster.sh, fsync=off; its replica is stopped, the bench measures the primary alone), runs
# the PostgreSQL workloads of bench/WORKLOADS.md (S, hand-rolled peer, asyncdb; median of 3 runs), writes
# build/bench/bench-pg.json and stops the server on exit, whatever happens.
#   scripts/bench-pg.sh            # the WORKLOADS.md sizes, 3-5 minutes on 2 cores
#   scripts/bench-pg.sh --quick    # every count divided by 20: a smoke run (about 10 s)
#   scripts/bench-pg.sh --rtt-us 200   # the variant with a simulated 200 us round trip (bench-pg-rtt.json)
# Extra arguments go to asyncdb_pg_bench (--runs N, --only W1,W4, --writers N, --readers N, ...).
# Server folder and port: ASYNCDB_PG_DIR (default /tmp/asyncdb-pg-bench-<uid>), ASYNCDB_PG_PORT (default 25462).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/cleanup.sh

./scripts/install-deps.sh cmake ninja-build g++ pkg-config libsqlitecpp-dev libasio-dev libbenchmark-dev libpqxx-dev \
  postgresql-15
cmake --preset bench
cmake --build --preset bench --target asyncdb_pg_bench

export ASYNCDB_PG_DIR=${ASYNCDB_PG_DIR:-/tmp/asyncdb-pg-bench-$(id -u)} ASYNCDB_PG_PORT=${ASYNCDB_PG_PORT:-25462}
on_exit ./scripts/pg-test-cluster.sh stop
eval "$(./scripts/pg-test-cluster.sh start)"
# The replica would replay W2's and W4's writes on the same cores; nothing here reads from it.
stop_replica=("${ASYNCDB_PG_BIN:-/usr/lib/postgresql/15/bin}/pg_ctl" -D "$ASYNCDB_PG_DIR/replica" -m fast -w stop)
if [[ $(id -un) == postgres ]]; then "${stop_replica[@]}" >/dev/null; else (cd / && runuser -u postgres -- "${stop_replica[@]}" >/dev/null); fi
json=build/bench/bench-pg.json
for a in "$@"; do [[ $a == --rtt-us ]] && json=build/bench/bench-pg-rtt.json; done
build/bench/bench/asyncdb_pg_bench --postgres "$ASYNCDB_PG_PRIMARY" --json "$json" "$@"
