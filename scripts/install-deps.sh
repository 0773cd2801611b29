#!/usr/bin/env bash
# Installs the Debian packages given as arguments (default: everything the suite needs) that are missing.
# Idempotent: no apt-get at all when everything is there. Root runs apt-get directly, others through sudo.
set -euo pipefail

packages=("$@")
if ((${#packages[@]} == 0)); then
  packages=(cmake ninja-build g++ libsqlitecpp-dev libasio-dev libboost1.81-dev catch2 clang-19 libclang-rt-19-dev
    clang-format librestinio-dev nlohmann-json3-dev libcpp-jwt-dev libssl-dev curl sqlite3 wrk libpqxx-dev pkg-config
    postgresql-15 prometheus-cpp-dev prometheus)
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
((${#missing[@]} == 0)) && exit 0

as_root=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
"${as_root[@]}" apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
