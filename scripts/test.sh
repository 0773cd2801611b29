#!/usr/bin/env bash
# The whole suite, as CI runs it (.ci/run). Each step is a CMake workflow preset (configure, build, test):
#   dev    g++ -Werror: unit tests (unit.*; the Boost flavour through package consumers, mixed_flavours and
#          the Beast example), the fault suite (faults.*),
#          PostgreSQL against a throwaway primary and replica (pg.*), the conformance suite against both
#          backends (contract.*), examples, the users service over HTTP (service.*), package consumers for
#          both flavours, compile-fail tests; every header on its own
#   asan   g++ -O0 AddressSanitizer + UBSan: standalone unit tests, fault suite (its memory-safety cases), service,
#          PostgreSQL, conformance suite
#   tsan   g++ ThreadSanitizer: unit tests in both flavours (unit.*, unit_boost.*), fault suite (smaller),
#          PostgreSQL, conformance suite
#   clang  clang++-19 -Werror: standalone unit tests, examples (10_boost_beast runs the Boost flavour),
#          service, PostgreSQL, conformance suite, compile-fail tests
#   format clang-format --dry-run --Werror over the C++ sources
# Every step runs even if an earlier one failed; logs go to build/<step>.log. Rerunnable, -j2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/install-deps.sh cmake ninja-build g++ libsqlitecpp-dev libasio-dev libboost1.81-dev catch2 clang-19 \
  libclang-rt-19-dev clang-format librestinio-dev nlohmann-json3-dev libcpp-jwt-dev libssl-dev curl sqlite3 \
  libpqxx-dev pkg-config postgresql-15 prometheus-cpp-dev prometheus
mkdir -p build

# g++ 12's TSan needs a fixed memory layout: with more than 28 bits of mmap ASLR (vm.mmap_rnd_bits,
# raised on newer kernels) its programs die with "unexpected memory mapping". If a trivial TSan
# program fails here, run the tsan step (whose build also runs the test binary) with ASLR off.
tsan_prefix=()
if echo 'int main() { return 0; }' | g++ -x c++ -fsanitize=thread -o build/tsan-probe - &&
  ! build/tsan-probe >/dev/null 2>&1; then
  tsan_prefix=(setarch "$(uname -m)" --addr-no-randomize)
  echo "test.sh: TSan cannot run with this kernel's ASLR; the tsan step runs under: ${tsan_prefix[*]}"
fi

format_check() {
  command -v clang-format >/dev/null || { echo "clang-format not installed, skipped"; return 0; }
  clang-format --version
  git ls-files -z --cached --others --exclude-standard -- '*.hpp' '*.cpp' ':!:build/**' |
    xargs -0 -r clang-format --dry-run --Werror
}

# The API reference builds without a Doxygen warning: every public entity has its /// contract (seconds).
docs_check() {
  ./scripts/install-deps.sh doxygen
  doxygen --version
  ./scripts/docs.sh build/docs
}

steps=() statuses=() times=() counts=()
passed=0 failed=0 skipped=0

# step NAME COMMAND...: runs one step, logs it to build/NAME.log and records its result.
step() {
  local name=$1 start=$SECONDS status=ok count=""
  shift
  echo "==> ${name}: $*"
  "$@" 2>&1 | tee "build/${name}.log" || status=FAILED
  # ctest's closing line: "100% tests passed, 0 tests failed out of 57"
  local line
  line=$(grep -Eo '[0-9]+ tests failed out of [0-9]+' "build/${name}.log" | tail -n 1 || true)
  if [[ -n $line ]]; then
    # ctest counts a skipped test (SKIP_RETURN_CODE: a case this machine cannot run) as not failed; it
    # lists each as "(Skipped)". Those are counted apart, never as passed.
    local bad=${line%% *} total=${line##* } skip
    skip=$(grep -c '(Skipped)$' "build/${name}.log" || true)
    passed=$((passed + total - bad - skip)) failed=$((failed + bad)) skipped=$((skipped + skip))
    count="$((total - bad - skip))/${total} tests"
    ((skip == 0)) || count+=", ${skip} skipped"
  fi
  steps+=("$name") statuses+=("$status") times+=("$((SECONDS - start))") counts+=("$count")
}

step dev cmake --workflow --preset dev
step asan cmake --workflow --preset asan
step tsan "${tsan_prefix[@]}" cmake --workflow --preset tsan
step clang cmake --workflow --preset clang
step format format_check
step docs docs_check

echo
echo "== asyncdb test summary"
ok=1
for i in "${!steps[@]}"; do
  printf '  %-8s %-7s %5ss  %s\n' "${steps[$i]}" "${statuses[$i]}" "${times[$i]}" "${counts[$i]}"
  [[ ${statuses[$i]} == ok ]] || ok=0
done
((ok)) || echo "  failed steps' logs: build/<step>.log"
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
((ok))
