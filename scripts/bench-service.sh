#!/usr/bin/env bash
# The reason asyncdb exists, measured: the users service under wrk load, async (asyncdb) and --sync (the DAO on
# the loop thread), in one run. For each mode and endpoint: wrk with 64 connections and 2 threads for DURATION
# seconds (default 10) on GET /users/async?limit=20 and GET /users/stats/async, while a probe asks GET /health
# every 10 ms (curl --rate, one keep-alive connection) and records each latency. Prints one table.
#   scripts/bench-service.sh [DURATION]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/cleanup.sh
duration=${1:-10}
((duration >= 10)) || { echo "bench-service: at least 10 s per run" >&2; exit 2; }

./scripts/install-deps.sh cmake ninja-build g++ libsqlitecpp-dev libasio-dev librestinio-dev nlohmann-json3-dev \
  libcpp-jwt-dev libssl-dev prometheus-cpp-dev curl wrk
cmake --preset release >/dev/null
cmake --build build/release --target users_service >/dev/null
bin=build/release/examples/users_service/users_service
work=build/release/bench-service
rm -rf "$work" && mkdir -p "$work"
head -c 32 /dev/urandom | base64 >"$work/secret"
"$bin" seed --db "$work/users.db" --users 10000 >/dev/null
token=$("$bin" token --db "$work/users.db" --secret-file "$work/secret" --user seed1 --ttl 3600)

pid=
start() {
  "$bin" serve --db "$work/users.db" --listen 127.0.0.1:0 --secret-file "$work/secret" "$@" >"$work/out" 2>"$work/err" &
  pid=$!
  on_exit stop_pid "$pid"
  for _ in $(seq 500); do grep -q '^listening on' "$work/out" && break; sleep 0.02; done
  url=$(sed 's/^listening on //' "$work/out")
}
stop() {
  kill -TERM "$pid" && wait "$pid" || true
  pid=
}

# probe SECONDS FILE: GET /health every 10 ms for SECONDS, one latency (ms) per line in FILE.
probe() {
  local n=$(($1 * 100)) cfg=$work/probe.cfg
  : >"$cfg"
  for _ in $(seq "$n"); do
    printf 'url = "%s/health"\noutput = /dev/null\nwrite-out = "%%{time_total}\\n"\nnext\n' "$url" >>"$cfg"
  done
  sed -i '$d' "$cfg"
  curl -sS --rate 100/s -K "$cfg" | awk '{ printf "%.3f\n", $1 * 1000 }' >"$2"
  [[ $(wc -l <"$2") == "$n" ]] || echo "bench-service: the probe got $(wc -l <"$2") of $n answers" >&2
}
# server_cpu: the service's user + system CPU so far, in clock ticks (/proc/PID/stat fields 14 and 15).
server_cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
# pct FILE P: the P-th percentile (nearest rank) of the numbers in FILE; P=100 is the worst.
pct() { sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 } END { i = int((p / 100) * NR + 0.999999); if (i < 1) i = 1; print v[i] }'; }

rows=()
for mode in async sync; do
  if [[ $mode == sync ]]; then start --sync; else start; fi
  probe 3 "$work/idle.$mode"
  rows+=("$(printf '| %-5s | (idle, no load)          |          |         |         | %8s | %9s |         |' "$mode" \
    "$(pct "$work/idle.$mode" 99)" "$(pct "$work/idle.$mode" 100)")")
  for path in '/users/async?limit=20' '/users/stats/async'; do
    probe "$duration" "$work/probe" &
    probe_pid=$!
    cpu_before=$(server_cpu)
    wrk -t2 -c64 -d"${duration}s" --latency -H "Authorization: Bearer $token" "$url$path" >"$work/wrk"
    cpu_after=$(server_cpu)
    wait "$probe_pid"
    rps=$(awk '/^Requests\/sec/ { print $2 }' "$work/wrk")
    p50=$(awk '$1 == "50%" { print $2 }' "$work/wrk")
    p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk")
    non2xx=$(awk '/Non-2xx/ { print $5 }' "$work/wrk")
    # the service's CPU per answered request, all its threads: wrk shares the two cores, so req/s alone hides it
    cpu_us=$(awk -v a="$cpu_before" -v b="$cpu_after" -v hz="$(getconf CLK_TCK)" '/requests in/ { printf "%.1f", (b - a) / hz * 1e6 / $1 }' "$work/wrk")
    [[ -z $non2xx ]] || echo "bench-service: $mode $path: $non2xx non-2xx answers" >&2
    rows+=("$(printf '| %-5s | %-24s | %8s | %7s | %7s | %8s | %9s | %7s |' "$mode" "GET $path" "$rps" "$p50" "$p99" \
      "$(pct "$work/probe" 99)" "$(pct "$work/probe" 100)" "$cpu_us")")
  done
  stop
done

echo "users_service, 10,000 users, wrk -t2 -c64 -d${duration}s; /health probe every 10 ms (ms); $(date -u +%F), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo '| mode  | endpoint                 | req/s    | wrk p50 | wrk p99 | probe p99 | probe worst | CPU us/req |'
echo '|-------|--------------------------|----------|---------|---------|-----------|-------------|------------|'
printf '%s\n' "${rows[@]}"
