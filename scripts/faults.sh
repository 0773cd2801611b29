#!/usr/bin/env bash
# Long runs of the fault suite (tests/faults/README.md): by default 500 kills per crash variant, a
# 10-minute soak, a 10-minute WAL run and a storm of 100,000 operations. Each test case runs as its own process (a case that cannot run here exits 4, skipped).
#   scripts/faults.sh [--kills N] [--soak-seconds S] [--wal-seconds S] [--storm-ops N] [--preset P]
#                     [Catch2 test spec, e.g. "[crash]"]
# Settings reach the tests as ASYNCDB_FAULT_KILLS, _SOAK_SECONDS, _WAL_SECONDS and _STORM_OPS (CI, dev step: 20, 20,
# 20 and 10,000); ASYNCDB_FAULT_SEED, if set, replays a crash run's kill moments or a storm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

kills=500 soak=600 wal=600 storm=100000 preset=dev
while [[ $# -gt 0 ]]; do
  case $1 in
    --kills) kills=$2; shift 2 ;;
    --soak-seconds) soak=$2; shift 2 ;;
    --wal-seconds) wal=$2; shift 2 ;;
    --storm-ops) storm=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    *) break ;;
  esac
done

cmake --preset "$preset" >/dev/null
nice -n 10 cmake --build "build/$preset" --target asyncdb_faults -j2
bin="build/$preset/tests/faults/asyncdb_faults"
export ASYNCDB_FAULT_KILLS=$kills ASYNCDB_FAULT_SOAK_SECONDS=$soak ASYNCDB_FAULT_WAL_SECONDS=$wal \
  ASYNCDB_FAULT_STORM_OPS=$storm

passed=0 failed=0 skipped=0
while IFS= read -r name; do
  [[ -n $name ]] || continue
  echo "==> $name"
  status=0
  "$bin" "$name" || status=$?
  case $status in
    0) passed=$((passed + 1)) ;;
    4) skipped=$((skipped + 1)) ;;
    *) failed=$((failed + 1)); echo "FAILED ($status): $name" ;;
  esac
done < <("$bin" --list-test-names-only "$@")
echo "faults.sh: ${passed} passed, ${failed} failed, ${skipped} skipped (kills ${kills}, soak ${soak} s, WAL ${wal} s, storm ${storm})"
((failed == 0))
