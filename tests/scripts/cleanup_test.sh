#!/usr/bin/env bash
# Proves that a script built like scripts/examples.sh leaves no server behind, whichever way it ends: success,
# a failing command, Ctrl-C (SIGINT to its process group), SIGTERM to the script alone. For each ending it runs
# this file as the script: it starts two servers, each with its stop added by on_exit (scripts/lib/cleanup.sh),
# then ends. The servers are stand-ins (processes whose command line names the work folder), and in the
# success and Ctrl-C endings also the throwaway PostgreSQL primary and replica (scripts/pg-test-cluster.sh),
# whose start and stop cost seconds. Afterwards no process may name the work or cluster folder, and the
# cluster folder must be gone. Then it checks the scripts themselves: every script that starts the cluster or
# a server in the background stops it through scripts/lib/cleanup.sh, and none of them sets an EXIT trap of
# its own (which would replace the one that runs the stops).
#   cleanup_test.sh            (environment: ASYNCDB_PG_DIR, ASYNCDB_PG_PORT, as for pg-test-cluster.sh)
# Without PostgreSQL 15 the cluster endings are skipped, saying so.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cluster=$root/scripts/pg-test-cluster.sh

if [[ ${1:-} == --script ]]; then  # the script under test: --script ENDING WITH_CLUSTER WORKDIR
  ending=$2 with_cluster=$3 work=$4
  source "$root/scripts/lib/cleanup.sh"
  if ((with_cluster)); then
    on_exit "$cluster" stop
    eval "$("$cluster" start)"
  fi
  for name in database service; do
    (exec -a "$work/$name" sleep 600) &  # a server stand-in whose command line names the work folder
    on_exit stop_pid "$!"
  done
  : >"$work/ready"
  case $ending in
    success) exit 0 ;;
    failure) false ;;    # set -e ends the script here
    signal) sleep 600 ;; # as if building: the signal comes now
  esac
  echo "cleanup_test: the $ending script ran past its end" >&2
  exit 2
fi

[[ -n ${ASYNCDB_PG_DIR:-} && -n ${ASYNCDB_PG_PORT:-} ]] || { echo "cleanup_test: set ASYNCDB_PG_DIR and ASYNCDB_PG_PORT" >&2; exit 2; }
have_pg=1
[[ -x ${ASYNCDB_PG_BIN:-/usr/lib/postgresql/15/bin}/initdb ]] || have_pg=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

survivors() { pgrep -af -- "$ASYNCDB_PG_DIR|$work/" || true; }

# check ENDING SIGNAL EXPECTED_STATUS WITH_CLUSTER: runs the script in its own process group, ends it, checks
# what is left.
check() {
  local ending=$1 signal=$2 expected=$3 with_cluster=$4 status=0 pid left
  if ((with_cluster && !have_pg)); then
    echo "skip $ending ($signal) with the cluster: PostgreSQL 15 is not installed"
    with_cluster=0
  fi
  rm -f "$work/ready"
  set -m  # its own process group, with SIGINT not ignored: what a terminal's Ctrl-C reaches
  "${BASH_SOURCE[0]}" --script "$ending" "$with_cluster" "$work" >"$work/out" 2>&1 &
  pid=$!
  set +m
  if [[ $signal != none ]]; then
    local deadline=$((SECONDS + 60))
    until [[ -e $work/ready ]]; do
      ((SECONDS < deadline)) || { echo "cleanup_test: $ending: never ready"; cat "$work/out"; break; }
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    if [[ $signal == INT ]]; then kill -INT -- "-$pid"; else kill "-$signal" "$pid"; fi
  fi
  wait "$pid" || status=$?
  left=$(survivors)
  if [[ $status != "$expected" ]]; then
    echo "FAIL $ending ($signal): exit $status, expected $expected"
    sed 's/^/    /' "$work/out"
    failures=$((failures + 1))
  elif [[ -n $left || -e $ASYNCDB_PG_DIR ]]; then
    echo "FAIL $ending ($signal): left running (or the folder $ASYNCDB_PG_DIR):"
    echo "${left:-    (no process; the folder is still there)}" | sed 's/^/    /'
    failures=$((failures + 1))
  else
    echo "ok   $ending ($signal$( ((with_cluster)) && echo ', with the cluster')): exit $status, no server left"
  fi
  # Whatever the script left is stopped here, so that one failure does not spoil the next case.
  ((with_cluster)) && "$cluster" stop >/dev/null 2>&1
  pkill -f -- "$work/" 2>/dev/null || true
}

check success none 0 1
check failure none 1 0
check signal INT 130 1
check signal TERM 143 0

# The scripts: whoever starts a server stops it through the one EXIT trap of scripts/lib/cleanup.sh.
cd "$root"
for file in scripts/*.sh tests/*/*.sh examples/*/*.sh; do
  [[ -e $file && $file != tests/scripts/cleanup_test.sh ]] || continue
  starts=$(grep -nE 'pg-test-cluster\.sh"? start|[^&]&$' "$file" | grep -v '^[0-9]*: *#' || true)
  if [[ -n $starts ]] && ! grep -q 'lib/cleanup\.sh' "$file"; then
    echo "FAIL $file starts a server or a background process without scripts/lib/cleanup.sh:"
    echo "$starts" | sed 's/^/    /'
    failures=$((failures + 1))
  elif [[ -n $starts ]]; then
    echo "ok   $file stops what it starts through scripts/lib/cleanup.sh"
  fi
  if grep -q 'lib/cleanup\.sh' "$file" && grep -nE '^[^#]*trap .*EXIT' "$file"; then
    echo "FAIL $file uses scripts/lib/cleanup.sh and sets an EXIT trap of its own (above), which replaces it"
    failures=$((failures + 1))
  fi
done
((failures == 0)) || { echo "$failures check(s) failed: a server can outlive its script"; exit 1; }
echo "no script left a server running"
