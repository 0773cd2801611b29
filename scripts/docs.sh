#!/usr/bin/env bash
# Builds the API reference from the public headers' `///` contracts into build/docs/html (open
# build/docs/html/index.html), or into OUT/html with `scripts/docs.sh OUT`. Fails on any Doxygen warning, an
# undocumented public entity included (docs/Doxyfile). Needs Debian's doxygen (scripts/install-deps.sh doxygen).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v doxygen >/dev/null || { echo "docs.sh: doxygen not found: scripts/install-deps.sh doxygen" >&2; exit 1; }
out=${1:-build/docs}
version=$(sed -n 's/^project(asyncdb VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
mkdir -p "$out"
ASYNCDB_SOURCE_DIR=$PWD ASYNCDB_DOCS_DIR=$out ASYNCDB_VERSION=$version doxygen docs/Doxyfile
echo "docs.sh: $out/html/index.html"
