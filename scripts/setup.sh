#!/usr/bin/env bash
# Installs the Debian 12 packages nudge needs to build, test and run its demo — only the ones
# that are missing. Fast when everything is present (one dpkg-query, no network).
# Run as root on a fresh machine, or as a user with sudo.
set -euo pipefail

packages=(
  cmake ninja-build g++
  libboost1.81-dev libboost-container1.81-dev libboost-date-time1.81-dev libboost-json1.81-dev
  libfmt-dev catch2 libbenchmark-dev pybind11-dev
  python3-dev python3-pytest python3-setuptools
  libcli11-dev libsimdjson-dev libsqlite3-dev libxxhash-dev zlib1g-dev python3-pandas
  python3-matplotlib python3-nbclient python3-ipykernel
  libcurl4-openssl-dev
  libpq-dev postgresql-15
  libhowardhinnant-date-dev tzdata
  python3-jsonschema graphviz
  python3-distributed python3-dask
  clang-14 libclang-rt-14-dev clang-format
)

# dpkg-query prints one line per known package; a package never seen prints nothing here.
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null \
              | awk '$2 == "installed" { print $1 }' || true)
missing=()
for p in "${packages[@]}"; do
  grep -qx -- "$p" <<<"$installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages are installed"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "setup: missing packages and not root (and no sudo): ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q </dev/null
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
