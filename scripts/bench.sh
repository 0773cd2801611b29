#!/usr/bin/env bash
# Builds the benchmarks with the bench preset (g++ Release -O2) and runs the workload driver, which prints
# the table of issue 4 (S, hand-rolled peer, asyncdb; median of 3 runs) and writes build/bench/bench.json.
# Extra arguments go to asyncdb_bench, e.g. `scripts/bench.sh --quick` for a smoke run (about a minute);
# the default, the exact sizes of WORKLOADS.md, takes several minutes (W2f fsyncs every autocommit insert).
# The hop micro-benchmark is built alongside: build/bench/bench/asyncdb_hop_bench.
# `scripts/bench.sh --sweep` runs the sweep instead (W1 against 1..256 in flight and 1, 2, 4 readers; a few
# minutes), writes build/bench/sweep.json and draws it into bench/plots/sweep.png (scripts/bench-plot.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/install-deps.sh cmake ninja-build g++ libsqlitecpp-dev libasio-dev libbenchmark-dev
cmake --preset bench
cmake --build --preset bench
if [[ " $* " == *" --sweep "* ]]; then
  build/bench/bench/asyncdb_bench --json build/bench/sweep.json "$@"
  ./scripts/bench-plot.sh build/bench/sweep.json bench/plots/sweep.png
else
  build/bench/bench/asyncdb_bench --json build/bench/bench.json "$@"
fi
