#!/usr/bin/env bash
# Drives the real users_service binary over real HTTP (curl) against real SQLite files.
#   service_test.sh BINARY WORKDIR PART      PART: endpoints | concurrency | shutdown | hostile
# Every wait has a deadline; every failure prints what was expected and what came back, and exits 1.
set -euo pipefail
bin=$1 work=$2 part=$3
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/cleanup.sh"  # each service started is stopped at exit
rm -rf "$work" && mkdir -p "$work"
cd "$work"
printf 'test-secret-%s' "$RANDOM$RANDOM" >secret
printf 'another-secret' >other_secret
set -E
trap 'echo "FAIL ($part): line $LINENO: $BASH_COMMAND exited $?" >&2' ERR

fail() {
  echo "FAIL ($part): $*" >&2
  for f in *.err; do [[ $f != cli.err && -s $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}

# start NAME DB ARGS...: starts a service, waits (20 s at most) for its one "listening on" line; sets pid, port.
start() {
  local name=$1 db=$2
  shift 2
  "$bin" serve --db "$db" --listen 127.0.0.1:0 --secret-file secret --threads 2 "$@" >"$name.out" 2>"$name.err" &
  pid=$!
  on_exit stop_pid "$pid"
  local deadline=$((SECONDS + 20))
  until grep -qs '^listening on http://127.0.0.1:[0-9]*$' "$name.out"; do
    kill -0 "$pid" 2>/dev/null || fail "$name exited before listening"
    ((SECONDS < deadline)) || fail "$name did not print its listening line within 20 s"
    sleep 0.02
  done
  [[ $(wc -l <"$name.out") -eq 1 ]] || fail "$name printed more than the listening line"
  port=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$name.out")
  [[ $port != 0 ]] || fail "the listening line names port 0"
}

# stop PID: SIGTERM, then the exit status within 10 s (sets stopped_status).
stop() {
  kill -TERM "$1" 2>/dev/null || true  # it may be on its way out already
  local deadline=$((SECONDS + 10))
  while kill -0 "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "pid $1 still running 10 s after SIGTERM"
    sleep 0.02
  done
  stopped_status=0
  wait "$1" || stopped_status=$?
}

# call METHOD PATH [curl args...]: sets status, body, headers (files body/headers hold them too).
call() {
  local method=$1 path=$2
  shift 2
  status=$(curl -sS -m 20 -X "$method" -o body -D headers -w '%{http_code}' "$@" "http://127.0.0.1:$port$path") ||
    status=000
  body=$(tr -d '\0' <body)
}
auth() { printf 'Authorization: Bearer %s' "$1"; }

# expect STATUS METHOD PATH [curl args...]: the call answers STATUS with a JSON body.
expect() {
  local want=$1
  shift
  call "$@"
  [[ $status == "$want" ]] || fail "$* -> $status (wanted $want): $body"
  grep -qi '^content-type: application/json; charset=utf-8' headers || fail "$* -> no JSON content type"
}
contains() { [[ $body == *"$1"* ]] || fail "body lacks $1: $body"; }
healthy() {
  call GET /health
  [[ $status == 200 && $body == '{"status":"ok"}' ]] || fail "/health after $1 -> $status $body"
}
sql() { sqlite3 -cmd '.timeout 10000' "$1" "$2"; }  # waits for the service's own locks
token() { "$bin" token --db "$1" --secret-file "${3:-secret}" --user "$2" "${@:4}"; }

# --- the command line --------------------------------------------------------------------------------------------
command_line() {
  local db=cli.db out
  "$bin" seed --db "$db" --users 2 >/dev/null
  : >empty_secret
  for args in "" "bogus" "serve" "serve --db $db --listen 127.0.0.1:0" "serve --db $db --listen 127.0.0.1:0 --secret-file empty_secret" \
    "serve --db $db --listen 127.0.0.1:0 --secret-file missing" "serve --db $db --listen nowhere --secret-file secret" \
    "serve --db $db --listen 127.0.0.1:70000 --secret-file secret" "serve --db $db --listen 127.0.0.1:0 --secret-file secret --threads 0" \
    "serve --db $db --listen 127.0.0.1:0 --secret-file secret --frobnicate" "token --db $db --secret-file secret" \
    "token --db $db --secret-file empty_secret --user seed1" "seed --db $db --users x"; do
    local rc=0
    # shellcheck disable=SC2086
    "$bin" $args >cli.out 2>cli.err </dev/null || rc=$?
    [[ $rc == 2 ]] || fail "'users_service $args' exited $rc, wanted 2"
    [[ $(wc -l <cli.err) == 1 && ! -s cli.out ]] || fail "'users_service $args' did not print one line of reason"
  done
  out=$(token "$db" seed1)
  [[ $out =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] || fail "token printed $out"
  local rc=0
  token "$db" nobody >/dev/null 2>&1 || rc=$?
  [[ $rc == 1 ]] || fail "token for a missing user exited $rc"
  [[ $(sql "$db" 'SELECT count(*) FROM users') == 2 ]] || fail "seed --users 2 did not store 2 users"
}

# --- every endpoint and status code, against whichever service listens on $port ------------------------------------
endpoint_suite() {
  local db=$1 tok other expired
  tok=$(token "$db" seed1)
  other=$(token "$db" seed1 other_secret)
  expired=$(token "$db" seed1 secret --ttl -30)

  expect 200 GET /health
  [[ $body == '{"status":"ok"}' ]] || fail "/health body $body"

  expect 200 GET /me/async -H "$(auth "$tok")"
  contains '"name":"seed1"' && contains '"id":1' && contains '"is_active":true' && contains '"email":"seed1@example.org"'
  expect 401 GET /me/async
  contains '"detail"'
  grep -qi '^www-authenticate: Bearer' headers || fail "401 without WWW-Authenticate"
  expect 401 GET /me/async -H "Authorization: Basic dXNlcjpwYXNz"
  expect 401 GET /me/async -H "Authorization: Bearer not.a.jwt"
  expect 401 GET /me/async -H "Authorization: Bearer "
  expect 401 GET /me/async -H "$(auth "$other")"
  expect 401 GET /me/async -H "$(auth "$expired")"
  local sig=${tok##*.} forged
  forged="${tok%.*}.$([[ ${sig:0:1} == A ]] && echo B || echo A)${sig:1}"  # the signature's first 6 bits changed
  expect 401 GET /me/async -H "$(auth "$forged")"

  # users: default page, bounds, order
  expect 200 GET /users/async -H "$(auth "$tok")"
  [[ $(grep -o '"id":' <<<"$body" | wc -l) == 100 ]] || fail "default limit is not 100"
  expect 200 GET '/users/async?skip=1&limit=2' -H "$(auth "$tok")"
  [[ $body == '[{"email":"seed2@example.org","id":2,"is_active":true,"name":"seed2"},{"email":"seed3@example.org","id":3,"is_active":true,"name":"seed3"}]' ]] ||
    fail "skip=1&limit=2 -> $body"
  expect 200 GET '/users/async?limit=1000' -H "$(auth "$tok")"
  [[ $(grep -o '"id":' <<<"$body" | wc -l) == $(sql "$db" 'SELECT min(count(*), 1000) FROM users') ]] || fail "limit=1000"
  expect 200 GET '/users/async?skip=100000&limit=5' -H "$(auth "$tok")"
  [[ $body == '[]' ]] || fail "past the end -> $body"
  for q in 'limit=1001' 'limit=-1' 'limit=abc' 'limit=' 'skip=-5' 'skip=1.5' 'limit=99999999999999999999999' 'skip=%zz'; do
    expect 422 GET "/users/async?$q" -H "$(auth "$tok")"
  done
  expect 401 GET /users/async

  # batch: created in request order with their ids, and exactly those
  local before
  before=$(sql "$db" 'SELECT count(*) FROM users')
  expect 201 POST /users/batch-async -H "$(auth "$tok")" --data-binary \
    '[{"name":"ann","email":"ann@example.org"},{"name":"bob","email":"bob@example.org","is_active":false},{"name":"gone","email":"g@example.org"}]'
  local ann bob
  ann=$(sql "$db" "SELECT id FROM users WHERE name='ann'") bob=$(sql "$db" "SELECT id FROM users WHERE name='bob'")
  [[ $body == "[{\"email\":\"ann@example.org\",\"id\":$ann,\"is_active\":true,\"name\":\"ann\"},{\"email\":\"bob@example.org\",\"id\":$bob,\"is_active\":false,\"name\":\"bob\"},"* ]] ||
    fail "batch response $body"
  [[ $(sql "$db" 'SELECT count(*) FROM users') == $((before + 3)) ]] || fail "batch did not store 3 users"
  # all or nothing: a name taken in the batch or already stored -> 409 naming it, nothing stored
  expect 409 POST /users/batch-async -H "$(auth "$tok")" --data-binary '[{"name":"new1","email":"a@b"},{"name":"new1","email":"a@b"}]'
  contains 'new1'
  expect 409 POST /users/batch-async -H "$(auth "$tok")" --data-binary '[{"name":"new2","email":"a@b"},{"name":"ann","email":"a@b"}]'
  contains 'ann'
  [[ $(sql "$db" "SELECT count(*) FROM users WHERE name IN ('new1','new2')") == 0 ]] || fail "a 409 batch left rows behind"
  expect 400 POST /users/batch-async -H "$(auth "$tok")" --data-binary '[{"name":"x",'
  long=$(printf 'n%.0s' {1..65})
  local items1001
  items1001="[$(for i in $(seq 1001); do printf '{"name":"m%d","email":"m@x"},' "$i"; done | sed 's/,$//')]"
  for bad in '{"name":"x","email":"x@y"}' '[]' '[1]' '[{"email":"x@y"}]' '[{"name":5,"email":"x@y"}]' \
    '[{"name":"x"}]' '[{"name":"x","email":"x@y","is_active":"yes"}]' '[{"name":"","email":"x@y"}]' \
    "[{\"name\":\"$long\",\"email\":\"x@y\"}]" '[{"name":"x","email":"nowhere"}]' "$items1001"; do
    expect 422 POST /users/batch-async -H "$(auth "$tok")" --data-binary "$bad"
    contains '"detail"'
  done
  expect 422 POST /users/batch-async -H "$(auth "$tok")" --data-binary '[{"name":"ok1","email":"a@b"},{"name":"x","email":"nowhere"}]'
  contains 'item 1'
  head -c $((2 << 20)) /dev/zero | tr '\0' ' ' >big_body
  expect 413 POST /users/batch-async -H "$(auth "$tok")" -H 'Expect:' --data-binary @big_body
  expect 401 POST /users/batch-async --data-binary '[{"name":"z","email":"z@z"}]'

  # stats: the three numbers agree with the table
  expect 200 GET /users/stats/async -H "$(auth "$tok")"
  local total active
  total=$(sql "$db" 'SELECT count(*) FROM users') active=$(sql "$db" 'SELECT count(*) FROM users WHERE is_active')
  [[ $body == "{\"active_users\":$active,\"inactive_users\":$((total - active)),\"total_users\":$total}" ]] ||
    fail "stats $body, table has $total users, $active active"

  # the current-user dependency: an inactive user and a deleted one are 403
  expect 403 GET /me/async -H "$(auth "$(token "$db" bob)")"
  local gone
  gone=$(token "$db" gone)
  expect 200 GET /me/async -H "$(auth "$gone")"
  sql "$db" "DELETE FROM users WHERE name='gone'"
  expect 403 GET /me/async -H "$(auth "$gone")"
  [[ $body == '{"detail":"user does not exist"}' ]] || fail "deleted user -> $body"
  expect 403 GET /users/stats/async -H "$(auth "$gone")"

  expect 404 GET /nowhere
  expect 404 GET /users/async/extra -H "$(auth "$tok")"
  expect 405 POST /me/async -H "$(auth "$tok")"
  expect 405 GET /users/batch-async -H "$(auth "$tok")"
  grep -qi '^allow: POST' headers || fail "405 without Allow"
  expect 405 DELETE /health

  call GET /metrics
  [[ $status == 200 ]] || fail "/metrics -> $status"
  grep -qi '^content-type: text/plain; version=0.0.4' headers || fail "/metrics content type"
  local h=http_server_request_duration_seconds
  for m in "# TYPE $h histogram" \
    "${h}_count{http_request_method=\"POST\",http_response_status_code=\"201\",http_route=\"/users/batch-async\"} 1" \
    "${h}_count{http_request_method=\"GET\",http_response_status_code=\"401\",http_route=\"/me/async\"} 7" \
    "${h}_count{http_request_method=\"DELETE\",http_response_status_code=\"405\",http_route=\"/health\"} 1" \
    "${h}_bucket{http_request_method=\"GET\",http_response_status_code=\"404\",http_route=\"\",le=\"+Inf\"} 2"; do
    [[ $body == *"$m"* ]] || fail "/metrics lacks $m"
  done
}

# promtool_check FILE: Prometheus' own parser and linter accept the exposition. promtool comes with the Debian package
# prometheus; without it this one check is skipped, saying so.
promtool_check() {
  if ! command -v promtool >/dev/null; then
    echo "SKIPPED: promtool check metrics (promtool is not installed; Debian package prometheus)"
    return 0
  fi
  promtool check metrics <"$1" >promtool.out 2>&1 || fail "promtool check metrics $1: $(cat promtool.out)"
}
# sum_of NAME FILE: the sum of every sample of NAME (any labels) in an exposition; value_of SERIES FILE: one sample.
sum_of() { awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d\n", s }' "$2"; }
value_of() { awk -v k="$1" '$1 == k { v = $2 } END { printf "%d\n", v }' "$2"; }

# /metrics under traffic: promtool accepts the page before and after; between the two scrapes every histogram's
# _count grows, and the series of what was sent grow by exactly what was sent (the first scrape counts itself once
# it is answered). With ASYNC=1, each /me/async is also exactly one completed asyncdb operation.
metrics_under_traffic() {
  local db=$1 async=$2 tok n=5 h=http_server_request_duration_seconds fam
  tok=$(token "$db" seed1)
  call GET /metrics
  [[ $status == 200 ]] || fail "/metrics -> $status"
  cp body metrics1.txt
  promtool_check metrics1.txt
  for _ in $(seq $n); do expect 200 GET /me/async -H "$(auth "$tok")"; done
  expect 404 GET /nowhere
  if ((async)); then  # one write too, so that the commit group histogram has a committed operation to count
    expect 201 POST /users/batch-async -H "$(auth "$tok")" --data-binary '[{"name":"traffic1","email":"t@x"}]'
  fi
  call GET /metrics
  cp body metrics2.txt
  promtool_check metrics2.txt
  grep -qx "# TYPE $h histogram" metrics2.txt || fail "/metrics has no $h histogram"
  for fam in $(sed -n 's/^# TYPE \([^ ]*\) histogram$/\1/p' metrics2.txt); do
    (($(sum_of "${fam}_count" metrics2.txt) > $(sum_of "${fam}_count" metrics1.txt))) ||
      fail "$fam did not move: _count $(sum_of "${fam}_count" metrics1.txt) then $(sum_of "${fam}_count" metrics2.txt)"
  done
  moved() {
    local was now
    was=$(value_of "$1" metrics1.txt) now=$(value_of "$1" metrics2.txt)
    ((now - was == $2)) || fail "$1 went from $was to $now, not up by $2"
  }
  moved "${h}_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/me/async\"}" $n
  moved "${h}_count{http_request_method=\"GET\",http_response_status_code=\"404\",http_route=\"\"}" 1
  moved "${h}_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/metrics\"}" 1
  if ((async)); then
    # Each authenticated request reads its user (UserOper::get_by_id); the batch adds a session: its open, begin, one
    # add and its commit.
    moved 'asyncdb_operations_total{outcome="completed"}' $((n + 5))
    local d=db_client_operation_duration_seconds w=asyncdb_operation_queue_wait_seconds op
    for fam in $d $w; do
      moved "${fam}_count{db_operation_name=\"UserOper::get_by_id\",outcome=\"succeeded\"}" $((n + 1))
      for op in AsyncDbSession::begin UserOper::add AsyncDbSession::commit; do
        moved "${fam}_count{db_operation_name=\"$op\",outcome=\"succeeded\"}" 1
      done
    done
    moved asyncdb_commit_group_size_count 1  # the batch's commit
  else
    if grep -E '^(asyncdb|db_client)_' metrics2.txt; then fail "--sync reports asyncdb metrics"; fi
  fi
}

# slow_log DB: with --slow-ms 0 every operation is logged on stderr, by name, and a session's operations with the
# source line that opened the session.
slow_log() {
  local db=$1 tok open_line
  tok=$(token "$db" seed1)
  start slow "$db" --slow-ms 0
  expect 200 GET /me/async -H "$(auth "$tok")"
  expect 201 POST /users/batch-async -H "$(auth "$tok")" --data-binary '[{"name":"slowlog1","email":"s@x"}]'
  stop "$pid"
  [[ $stopped_status == 0 ]] || fail "the --slow-ms service exited $stopped_status"
  grep -q '^slow db operation: UserOper::get_by_id [0-9.]* ms (queued [0-9.]* ms, ran [0-9.]* ms) succeeded$' slow.err ||
    fail "no slow-operation line for UserOper::get_by_id: $(cat slow.err)"
  open_line=$(grep -n 'co_await asyncdb::async_db_session(db_, whole_request)' "$(dirname "$0")/../../examples/users_service/store.hpp" |
    cut -d: -f1)
  [[ -n $open_line ]] || fail "store.hpp no longer opens a session where this test looks"
  grep -q "^slow db operation: UserOper::add .* succeeded at .*/users_service/store.hpp:$open_line\$" slow.err ||
    fail "no slow-operation line for the batch's add at store.hpp:$open_line: $(cat slow.err)"
}

async_metrics() {
  for m in '# TYPE asyncdb_operations_total counter' '# HELP asyncdb_operations_queued' \
    'asyncdb_operations_total{outcome="failed"} ' 'asyncdb_operations_total{outcome="cancelled"} ' \
    'asyncdb_operations_total{outcome="rejected"} ' '# TYPE asyncdb_queue_wait_seconds_total counter' \
    'asyncdb_group_commits_total' 'asyncdb_grouped_operations_total' 'asyncdb_writer_held_seconds{holder="none"' \
    'asyncdb_operations_running 0' 'db_client_connections_usage{pool_name="writer",state="idle"} 1' \
    'db_client_connections_usage{pool_name="writer",state="used"} 0'; do
    [[ $body == *"$m"* ]] || fail "/metrics lacks $m"
  done
  [[ $body =~ asyncdb_operations_total\{outcome=\"completed\"\}\ ([0-9]+) ]] && ((BASH_REMATCH[1] > 10)) ||
    fail "completed count"
}

# metric NAME: the value of one unlabelled metric of the service on $port.
metric() { curl -sS -m 5 "http://127.0.0.1:$port/metrics" | sed -n "s/^$1 //p"; }

# wait_metric NAME VALUE: polls /metrics (10 s at most) until NAME reads VALUE.
wait_metric() {
  local deadline=$((SECONDS + 10))
  until [[ $(metric "$1") == "$2" ]]; do
    ((SECONDS < deadline)) || fail "$1 never reached $2 (last: $(metric "$1"))"
    sleep 0.01
  done
}

# 503 and 504, with a foreign process holding SQLite's write lock so that the writer cannot start.
busy_and_timeout() {
  local db=$1 tok
  tok=$(token "$db" seed1)
  coproc LOCK { sqlite3 "$db"; }
  echo "BEGIN IMMEDIATE; SELECT 'locked';" >&"${LOCK[1]}"
  local line
  read -r -t 10 -u "${LOCK[0]}" line || fail "sqlite3 did not take the write lock"
  [[ $line == locked ]] || fail "sqlite3 said $line"
  curl -sS -m 20 -o slow1.body -w '%{http_code}' -H "$(auth "$tok")" --data-binary '[{"name":"late1","email":"l@x"}]' \
    "http://127.0.0.1:$port/users/batch-async" >slow1.status &
  local c1=$!
  wait_metric asyncdb_operations_running 1  # its BEGIN IMMEDIATE waits for the lock, on the writer
  curl -sS -m 20 -o slow2.body -w '%{http_code}' -H "$(auth "$tok")" --data-binary '[{"name":"late2","email":"l@x"}]' \
    "http://127.0.0.1:$port/users/batch-async" >slow2.status &
  local c2=$!
  wait_metric asyncdb_operations_queued 1  # its session waits for the writer: the queue (max 1) is full
  expect 503 GET /me/async -H "$(auth "$tok")"
  grep -qi '^retry-after: 1' headers || fail "503 without Retry-After"
  wait "$c1" "$c2"
  [[ $(<slow1.status) == 504 && $(<slow2.status) == 504 ]] || fail "locked batches -> $(<slow1.status) $(<slow2.status)"
  echo "ROLLBACK; SELECT 'released';" >&"${LOCK[1]}"
  read -r -t 10 -u "${LOCK[0]}" line || fail "sqlite3 did not release the lock"
  exec {LOCK[1]}>&-
  wait "$LOCK_PID" || true
  [[ $(sql "$db" "SELECT count(*) FROM users WHERE name LIKE 'late%'") == 0 ]] || fail "a timed-out batch was stored"
  expect 201 POST /users/batch-async -H "$(auth "$tok")" --data-binary '[{"name":"after","email":"a@x"}]'
  healthy "the lock was released"
}

# 500: an exception the routes do not know, logged once on stderr.
internal_error() {
  local db=$1 name=$2 tok
  tok=$(token "$db" seed1)
  sql "$db" 'ALTER TABLE users RENAME TO users_elsewhere'
  expect 500 GET /me/async -H "$(auth "$tok")"
  [[ $body == '{"detail":"internal error"}' ]] || fail "500 body $body"
  [[ $(grep -c '^users_service: 500 on /me/async' "$name.err") == 1 ]] || fail "the 500 was not logged once"
  healthy "a 500"
  sql "$db" 'ALTER TABLE users_elsewhere RENAME TO users'
}

# A body is exactly one JSON document, nothing after it but whitespace, and every string in it (keys too) is valid
# UTF-8 without NUL: otherwise 400 (malformed) or 422 (well-formed, invalid), and the table does not change. Each
# refused body would be a valid batch of fresh names without its flaw. Runs on the hostile service ($tok, h.db).
refused() {
  local before
  before=$(sql h.db 'SELECT count(*) FROM users')
  call POST /users/batch-async -H "$(auth "$tok")" -H 'Expect:' --data-binary "@$1"
  [[ $status == 400 || $status == 422 ]] || fail "$2 -> $status (wanted 400 or 422): $body"
  [[ $(sql h.db 'SELECT count(*) FROM users') == "$before" ]] || fail "$2 -> $status, but rows were stored"
  healthy "$2"
}
strict_bodies() {
  local batch='[{"name":"strict1","email":"s@x"}]' i=0 bad
  printf '%s\0' "$batch" >s.body && refused s.body "a valid batch and a NUL byte"
  printf '%s\0garbage' "$batch" >s.body && refused s.body "a valid batch, a NUL byte, garbage"
  printf '%s\0%s' "$batch" '[{"name":"strict2","email":"s@x"}]' >s.body && refused s.body "a batch, NUL, a batch"
  printf '%s [{"name":"strict2","email":"s@x"}]' "$batch" >s.body && refused s.body "two documents"
  printf '%s x' "$batch" >s.body && refused s.body "a batch and a trailing word"
  printf '\0%s' "$batch" >s.body && refused s.body "a NUL byte, then a batch"
  printf '[{"name":"a\0b","email":"s@x"}]' >s.body && refused s.body "a raw NUL in a name"
  for bad in '[{"name":"a\u0000b","email":"s@x"}]' '[{"name":"strict3","email":"s\u0000@x"}]' \
    '[{"name":"strict4","email":"s@x","note":"\u0000"}]' '[{"name":"strict5","email":"s@x","a\u0000":1}]' \
    '[{"name":"strict6","email":"s@x","deep":[{"x":["\u0000"]}]}]'; do
    printf '%s' "$bad" >s.body && refused s.body "an escaped NUL: $bad"
  done
  # overlong, surrogate, past U+10FFFF, truncated, stray continuation, 5-byte, and the escaped lone surrogates
  for bad in '\xc0\xaf' '\xe0\x80\xaf' '\xed\xa0\x80' '\xf4\x90\x80\x80' '\xc3' '\xe2\x82' '\x80' \
    '\xf8\x88\x80\x80\x80' '\xff\xfe' '\\ud800' '\\udc00' '\\ud800\\u0041'; do
    i=$((i + 1))
    printf "[{\"name\":\"utf$i$bad\",\"email\":\"s@x\"}]" >s.body && refused s.body "invalid UTF-8 in a name: $bad"
    printf "[{\"name\":\"utf$i\",\"email\":\"s$bad@x\"}]" >s.body && refused s.body "invalid UTF-8 in an email: $bad"
  done
  # whitespace after the document is allowed, and a valid non-ASCII name is stored byte for byte
  printf '[{"name":"strict-\xc3\xa9-\\u00e9-\xf0\x9f\x98\x80","email":"s@x"}] \r\n\t ' >s.body
  expect 201 POST /users/batch-async -H "$(auth "$tok")" --data-binary @s.body
  [[ $(sql h.db "SELECT hex(name) FROM users WHERE email = 's@x'") == "$(printf 'strict-\xc3\xa9-\xc3\xa9-\xf0\x9f\x98\x80' | od -An -tx1 | tr -d ' \n' | tr a-f A-F)" ]] ||
    fail "the non-ASCII name was not stored as sent"
}

# No stored name or email holds a NUL byte or invalid UTF-8 (grep in a UTF-8 locale rejects what RFC 3629 does).
clean_table() {
  [[ $(sql "$1" "SELECT count(*) FROM users WHERE instr(CAST(name AS BLOB), x'00') OR instr(CAST(email AS BLOB), x'00')") == 0 ]] ||
    fail "a stored name or email holds a NUL byte"
  sql "$1" "SELECT name FROM users UNION ALL SELECT email FROM users" >table.txt
  if LC_ALL=C.UTF-8 grep -naxv '.*' table.txt; then fail "a stored name or email is not valid UTF-8"; fi
}

case $part in
  endpoints)
    command_line
    "$bin" seed --db async.db --users 150 >/dev/null
    start async async.db  # the default 5 s timeout: a loaded CI machine must not turn a slow commit into a 504
    endpoint_suite async.db
    call GET /metrics
    async_metrics
    metrics_under_traffic async.db 1
    internal_error async.db async
    stop "$pid"
    [[ $stopped_status == 0 ]] || fail "async service exited $stopped_status"
    slow_log async.db
    start busy async.db --request-timeout 2000 --max-queued 1
    busy_and_timeout async.db
    stop "$pid"
    [[ $stopped_status == 0 ]] || fail "the busy service exited $stopped_status"

    "$bin" seed --db sync.db --users 150 >/dev/null
    start sync sync.db --sync
    endpoint_suite sync.db
    metrics_under_traffic sync.db 0
    internal_error sync.db sync
    stop "$pid"
    [[ $stopped_status == 0 ]] || fail "sync service exited $stopped_status"
    ;;

  concurrency)
    # 16 clients post 3 batches each, all at once; each response lists exactly its own users, in order; the table
    # then holds exactly the union.
    "$bin" seed --db c.db --users 1 >/dev/null
    start conc c.db
    tok=$(token c.db seed1)
    clients=()
    for c in $(seq 16); do
      for r in 1 2 3; do
        printf '[%s]' "$(for i in $(seq 25); do printf '{"name":"c%d_%d_%d","email":"c%d@x"},' "$c" "$r" "$i" "$c"; done | sed 's/,$//')" >"batch$c.$r"
      done
      (
        for r in 1 2 3; do
          curl -sS -m 30 -o "resp$c.$r" -w '%{http_code}' -H "$(auth "$tok")" --data-binary "@batch$c.$r" \
            "http://127.0.0.1:$port/users/batch-async" >"status$c.$r"
        done
      ) &
      clients+=($!)
    done
    wait "${clients[@]}"
    for c in $(seq 16); do
      for r in 1 2 3; do
        [[ $(<"status$c.$r") == 201 ]] || fail "client $c batch $r -> $(<"status$c.$r"): $(<"resp$c.$r")"
        sent=$(grep -o '"name":"[^"]*"' "batch$c.$r" | tr '\n' ' ')
        got=$(grep -o '"name":"[^"]*"' "resp$c.$r" | tr '\n' ' ')
        [[ $sent == "$got" ]] || fail "client $c batch $r got other users: $got"
        grep -o '"id":[0-9]*,"is_active":true,"name":"[^"]*"' "resp$c.$r" |
          sed 's/"id":\([0-9]*\),"is_active":true,"name":"\([^"]*\)"/\1|\2/' >"ids$c.$r"
      done
    done
    cat ids* | sort >claimed
    sql c.db "SELECT id || '|' || name FROM users WHERE id > 1" | sort >stored
    [[ $(wc -l <claimed) == 1200 ]] || fail "the responses name $(wc -l <claimed) users, not 1200"
    cmp -s claimed stored || fail "the table is not exactly the union of the responses: $(diff claimed stored | head -5)"
    stop "$pid"
    [[ $stopped_status == 0 ]] || fail "exited $stopped_status"
    ;;

  shutdown)
    # SIGTERM while batches are in flight: exit 0 within 10 s, every 201 is stored, no batch is half stored.
    "$bin" seed --db s.db --users 1 >/dev/null
    start shut s.db
    tok=$(token s.db seed1)
    clients=()
    for c in $(seq 8); do
      (
        for round in $(seq 1000); do
          printf '[%s]' "$(for i in $(seq 50); do printf '{"name":"s%d_%d_%d","email":"s@x"},' "$c" "$round" "$i"; done | sed 's/,$//')" >"sbatch$c"
          code=$(curl -sS -m 30 -o /dev/null -w '%{http_code}' -H "$(auth "$tok")" --data-binary "@sbatch$c" \
            "http://127.0.0.1:$port/users/batch-async" 2>/dev/null) || code=000
          echo "$round $code" >>"sstatus$c"
          [[ $code == 201 ]] || break
        done
      ) &
      clients+=($!)
    done
    deadline=$((SECONDS + 20))
    until [[ $(cat sstatus* 2>/dev/null | grep -c ' 201$' || true) -ge 16 ]]; do
      ((SECONDS < deadline)) || fail "no batches were answered before SIGTERM"
      sleep 0.01
    done
    stop "$pid"
    [[ $stopped_status == 0 ]] || fail "exited $stopped_status after SIGTERM"
    wait "${clients[@]}"
    created=0
    for c in $(seq 8); do
      while read -r round code; do
        n=$(sql s.db "SELECT count(*) FROM users WHERE name LIKE 's${c}\_${round}\_%' ESCAPE '\\'")
        [[ $code != 201 || $n == 50 ]] || fail "batch $c/$round was answered 201 but $n of 50 are stored"
        [[ $n == 0 || $n == 50 ]] || fail "batch $c/$round is half stored ($n of 50)"
        [[ $code == 201 ]] && created=$((created + 1))
      done <"sstatus$c"
    done
    [[ $(sql s.db 'SELECT count(*) FROM users') -ge $((1 + created * 50)) ]] || fail "rows lost"
    echo "shutdown: $created batches answered 201 before SIGTERM closed the service"

    # Requests certainly in flight: a foreign sqlite3 holds the write lock, four batches wait for it (one in
    # BEGIN IMMEDIATE, three queued for the writer), SIGTERM arrives, the service stops accepting, the lock is
    # released: all four are answered 201 and stored, then the process exits 0.
    "$bin" seed --db s2.db --users 1 >/dev/null
    start shut2 s2.db --request-timeout 20000
    tok=$(token s2.db seed1)
    coproc LOCK { sqlite3 s2.db; }
    echo "BEGIN IMMEDIATE; SELECT 'locked';" >&"${LOCK[1]}"
    read -r -t 10 -u "${LOCK[0]}" line && [[ $line == locked ]] || fail "sqlite3 did not take the write lock"
    clients=()
    for c in 1 2 3 4; do
      printf '[%s]' "$(for i in $(seq 10); do printf '{"name":"f%d_%d","email":"f@x"},' "$c" "$i"; done | sed 's/,$//')" >"fbatch$c"
      curl -sS -m 30 -o /dev/null -w '%{http_code}' -H "$(auth "$tok")" --data-binary "@fbatch$c" \
        "http://127.0.0.1:$port/users/batch-async" >"fstatus$c" &
      clients+=($!)
      if ((c == 1)); then wait_metric asyncdb_operations_running 1; else wait_metric asyncdb_operations_queued $((c - 1)); fi
    done
    kill -TERM "$pid"
    deadline=$((SECONDS + 10))
    while curl -s -m 1 -o /dev/null "http://127.0.0.1:$port/health"; do
      ((SECONDS < deadline)) || fail "still accepting connections 10 s after SIGTERM"
      sleep 0.01
    done
    kill -0 "$pid" 2>/dev/null || fail "exited with requests in flight"
    echo "ROLLBACK; SELECT 'released';" >&"${LOCK[1]}"
    read -r -t 10 -u "${LOCK[0]}" line || fail "sqlite3 did not release the lock"
    exec {LOCK[1]}>&-
    wait "$LOCK_PID" || true
    wait "${clients[@]}"
    for c in 1 2 3 4; do [[ $(<"fstatus$c") == 201 ]] || fail "in-flight batch $c -> $(<"fstatus$c") after SIGTERM"; done
    stop "$pid"
    [[ $stopped_status == 0 ]] || fail "exited $stopped_status after finishing its in-flight batches"
    [[ $(sql s2.db "SELECT count(*) FROM users WHERE name LIKE 'f%'") == 40 ]] || fail "in-flight batches not stored"
    ;;

  hostile)
    "$bin" seed --db h.db --users 1 >/dev/null
    start hostile h.db --request-timeout 2000  # also how long a slow client may take to send its request
    tok=$(token h.db seed1)
    post() {
      call POST /users/batch-async -H "$(auth "$tok")" -H 'Expect:' --data-binary "$1"
      [[ $status =~ ^4[0-9][0-9]$|^503$ ]] || fail "hostile body ${2:-$1} -> $status $body"
      healthy "${2:-$1}"
    }
    post '[{"name":"x","email":"x@y"' truncated
    printf '%*s' 100000 '' | tr ' ' '[' >deep && post @deep "100000 nested ["
    printf '[%s1%s]' "$(printf '%*s' 20000 '' | tr ' ' '{' | sed 's/{/{"a":/g')" "$(printf '%*s' 20000 '' | tr ' ' '}')" >deep2
    post @deep2 "20000 nested objects"
    post '[{"name":["x"],"email":{"a":1}}]' "wrong types"
    post '[{"name":"x","email":"x@y","is_active":1e999999}]' "huge number"
    post "[{\"name\":\"x\",\"email\":\"x@y\",\"is_active\":$(printf '9%.0s' {1..5000})}]" "5000 digits"
    strict_bodies
    head -c $((10 << 20)) /dev/zero | tr '\0' '[' >huge && post @huge "a 10 MB body"
    head -c $((40 << 20)) /dev/zero | tr '\0' ' ' >huger
    curl -sS -m 20 -o /dev/null -H "$(auth "$tok")" -H 'Expect:' --data-binary @huger \
      "http://127.0.0.1:$port/users/batch-async" 2>/dev/null || true  # past RESTinio's ceiling: connection closed
    healthy "a 40 MB body"

    # a slow client that never finishes its body is cut off after --request-timeout, and nobody else waits for it
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf 'POST /users/batch-async HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[{"name":' >&3
    healthy "a slow client connected"
    rc=0
    timeout 10 cat <&3 >/dev/null || rc=$?
    [[ $rc == 0 ]] || fail "the slow client's connection was not closed within 10 s"
    exec 3<&-
    healthy "the slow client was cut off"

    # 1,000 random bodies (random bytes, valid batches cut or corrupted at random, and valid batches of a fresh
    # name spoilt by a NUL byte and random bytes after them or by an escaped NUL at a random place in a string),
    # each followed by /health, in one keep-alive curl run
    valid='[{"name":"rand","email":"r@x","is_active":true},{"name":"rand2","email":"r2@x"}]'
    : >curl.cfg
    for i in $(seq 1000); do
      kind=body
      case $((RANDOM % 5)) in
        0) head -c $((RANDOM % 512 + 1)) /dev/urandom >"r$i" ;;
        1) printf '%s' "${valid:0:$((RANDOM % ${#valid}))}" >"r$i" ;;
        2) { printf '%s' "${valid:0:$((RANDOM % ${#valid}))}"; head -c $((RANDOM % 8 + 1)) /dev/urandom; printf '%s' "${valid:$((RANDOM % ${#valid}))}"; } >"r$i" ;;
        3) { printf '[{"name":"nul%d","email":"n@x"}]\0' "$i"; head -c $((RANDOM % 64)) /dev/urandom; } >"r$i"; kind=strict ;;
        4) name="esc$i-$RANDOM" cut=$((RANDOM % (${#name} + 1)))
          printf '[{"name":"%s\\u0000%s","email":"e@x"}]' "${name:0:cut}" "${name:cut}" >"r$i"; kind=strict ;;
      esac
      printf 'url = "http://127.0.0.1:%s/users/batch-async"\ndata-binary = "@r%d"\nheader = "%s"\noutput = /dev/null\nwrite-out = "%%{http_code} %s\\n"\nnext\nurl = "http://127.0.0.1:%s/health"\noutput = /dev/null\nwrite-out = "%%{http_code} health\\n"\nnext\n' \
        "$port" "$i" "$(auth "$tok")" "$kind" "$port" >>curl.cfg
    done
    sed -i '$d' curl.cfg  # no "next" after the last request
    curl -sS -m 120 -K curl.cfg >random.codes || fail "curl stopped during the random bodies"
    [[ $(grep -c ' \(body\|strict\)$' random.codes) == 1000 && $(grep -c '^200 health$' random.codes) == 1000 ]] ||
      fail "random bodies: $(sort random.codes | uniq -c | tr '\n' ' ')"
    if grep ' body$' random.codes | grep -Ev '^(4[0-9][0-9]|503|201) body$'; then fail "a random body got a non-4xx"; fi
    if grep ' strict$' random.codes | grep -Ev '^(400|422) strict$'; then fail "a spoilt batch was not refused"; fi
    [[ $(sql h.db "SELECT count(*) FROM users WHERE name LIKE 'nul%' OR name LIKE 'esc%'") == 0 ]] ||
      fail "a spoilt batch was stored"
    clean_table h.db
    # A splice of two cuts of the valid batch with random bytes between can itself be a valid batch with fresh
    # names (a 201): rare, legitimate, so counted, not refused.
    echo "random bodies: $(grep -v ' health$' random.codes | sort | uniq -c | tr -s ' \n' ' ')"
    healthy "1000 random bodies"
    stop "$pid"
    [[ $stopped_status == 0 ]] || fail "exited $stopped_status"
    ;;
  *) fail "unknown part $part" ;;
esac
echo "service $part: ok"
