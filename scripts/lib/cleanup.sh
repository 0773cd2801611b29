# shellcheck shell=bash
# Sourced by every script that starts a server or a background process: one EXIT trap for the whole script,
# to which each start adds its stop, so a later start can never replace an earlier one's (the bug this
# prevents: examples.sh replaced its cluster's trap with the service's, and the cluster outlived the run).
#   source scripts/lib/cleanup.sh
#   on_exit ./scripts/pg-test-cluster.sh stop      # runs at exit: success, failure, Ctrl-C (INT), TERM, HUP
#   on_exit stop_pid "$pid"                        # SIGTERM, a bounded wait, then SIGKILL
# Actions run once, newest first (a service stops before the database it uses); a failing action does not
# stop the others, and the script's exit status is kept. Never call `trap ... EXIT` in a script that uses this.

cleanup_actions=()
# The shell that owns the actions: a subshell forked from it (`( ... ) &`) keeps the EXIT trap until it execs,
# and one signalled before that must not run its parent's stops.
cleanup_owner=$BASHPID

# on_exit COMMAND [ARGS...]: runs COMMAND ARGS at exit, before the actions added earlier.
on_exit() {
  local quoted
  printf -v quoted '%q ' "$@"
  cleanup_actions+=("$quoted")
}

# alive PID: PID runs (a zombie, exited but not yet waited for, does not count).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# stop_pid PID: SIGTERM, then waits (10 s at most) for PID to be gone, then SIGKILL; quiet if already gone.
stop_pid() {
  local i
  kill -TERM "$1" 2>/dev/null || return 0
  for ((i = 0; i < 500; i++)); do
    alive "$1" || break
    sleep 0.02
  done
  if alive "$1"; then
    echo "cleanup: pid $1 still running 10 s after SIGTERM; killing it" >&2
    kill -KILL "$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || true  # reaps it if it is this shell's child
}

cleanup_run() {
  local status=$? i
  trap - EXIT
  [[ $BASHPID == "$cleanup_owner" ]] || return "$status"
  for ((i = ${#cleanup_actions[@]} - 1; i >= 0; i--)); do
    eval "${cleanup_actions[i]}" || true
  done
  cleanup_actions=()
  return "$status"
}

# EXIT alone: bash runs it when a signal (INT, TERM, HUP) ends the script too, at once. A trap on the signal
# itself would be worse: bash defers it until the foreground command (a build, a sleep) has finished.
trap cleanup_run EXIT
