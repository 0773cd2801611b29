#!/bin/sh
# Proves asyncdb refuses, with a readable static_assert, code that would hand a caller something bound
# to a connection or trip g++ 12's double-destroy bug. For every case file (or the files given):
#   1. with -DASYNCDB_COMPILE_FAIL_CONTROL (the corrected code) it must compile;
#   2. as written it must fail, and the compiler's first error line must contain the file's "// expect:" text.
#      Cases marked "// only: gcc<13" must instead compile on other compilers (the bug is g++ 12's).
# Usage: CXX=g++ tests/compile_fail/check.sh [case.cpp...]   (CXXFLAGS adds flags, e.g. include paths)
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cxx=${CXX:-c++}
extra=${CXXFLAGS:-}

kind=$(printf '#if defined(__clang__)\nclang\n#elif defined(__GNUC__) && __GNUC__ < 13\ngcc_lt_13\n#else\nother\n#endif\n' |
  "$cxx" -E -P -x c++ - | tr -d '[:space:]')
flags="-std=c++20 -fsyntax-only -I$root/include -I$here"
# What the asyncdb::asyncdb target adds for clang (Asio 1.22 misses its coroutine support there).
[ "$kind" = clang ] && flags="$flags -DASIO_HAS_CO_AWAIT=1 -DASIO_HAS_STD_COROUTINE=1"

if [ $# -gt 0 ]; then cases="$*"; else cases=$(ls "$here"/*.cpp); fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failures=0

fail() {
  echo "FAIL $1: $2"
  sed 's/^/    /' "$log" | head -n 40
  failures=$((failures + 1))
}

for file in $cases; do
  name=$(basename "$file")
  expect=$(sed -n 's|^// expect: ||p' "$file" | head -n 1)
  only=$(sed -n 's|^// only: ||p' "$file" | head -n 1)
  needs=$(sed -n 's|^// needs: ||p' "$file" | head -n 1)
  case_flags=$flags
  if [ -n "$needs" ]; then  # a pkg-config module (libpqxx): skipped, saying so, where it is missing
    if ! pkg_flags=$(pkg-config --cflags "$needs" libpq 2>/dev/null); then
      echo "skip $name (needs $needs, not found by pkg-config)"
      continue
    fi
    case_flags="$flags $pkg_flags"
  fi
  if [ -z "$expect" ]; then
    echo "FAIL $name: no '// expect:' line"
    failures=$((failures + 1))
    continue
  fi

  # shellcheck disable=SC2086
  if ! "$cxx" $case_flags $extra -DASYNCDB_COMPILE_FAIL_CONTROL "$file" >"$log" 2>&1; then
    fail "$name" "the corrected code (ASYNCDB_COMPILE_FAIL_CONTROL) does not compile"
    continue
  fi

  # shellcheck disable=SC2086
  if "$cxx" $case_flags $extra "$file" >"$log" 2>&1; then compiled=yes; else compiled=no; fi

  if [ "$only" = "gcc<13" ] && [ "$kind" != gcc_lt_13 ]; then
    if [ "$compiled" = yes ]; then
      echo "ok   $name (accepted: $cxx has no g++ 12 co_await bug)"
    else
      fail "$name" "rejected, but only g++ < 13 should refuse it"
    fi
    continue
  fi

  if [ "$compiled" = yes ]; then
    fail "$name" "compiled, but asyncdb must refuse it"
  elif grep -m 1 'error' "$log" | grep -qF -- "$expect"; then
    echo "ok   $name (refused: $expect)"
  else
    fail "$name" "refused, but its first error line lacks '$expect'"
  fi
done

if [ "$failures" -ne 0 ]; then
  echo "$failures compile-fail check(s) failed"
  exit 1
fi
echo "all compile-fail checks passed"
