#!/usr/bin/env bash
# Builds every example with the dev preset and runs them in order (examples/NN_*.cpp), each in a fresh
# folder under build/dev/examples/run/. Stops at the first example that fails. Rerunnable.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/install-deps.sh cmake ninja-build g++ libsqlitecpp-dev libasio-dev catch2

count=$(find examples -maxdepth 1 -name '[0-9][0-9]_*.cpp' | wc -l)
cmake --preset dev
if ! cmake --build --preset dev --target run_examples; then
  echo "examples.sh: an example failed to build or run (see above)" >&2
  exit 1
fi
echo
echo "examples: ${count} passed, 0 failed"
