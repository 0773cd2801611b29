#!/usr/bin/env bash
# Formats every C++ file of the repository in place with .clang-format (the check scripts/test.sh runs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
git ls-files -z --cached --others --exclude-standard -- '*.hpp' '*.cpp' ':!:build/**' | xargs -0 -r clang-format -i
