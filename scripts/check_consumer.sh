#!/usr/bin/env bash
# Checks that a host project can use nudge both ways, from scratch:
#   1. cmake --install into a temporary prefix, then find_package(nudge CONFIG REQUIRED);
#   2. add_subdirectory of the source tree.
# Each consumer build runs its program, which exits non-zero if the engine's result is wrong.
# Usage: scripts/check_consumer.sh [work dir]   (default: a fresh temporary directory)
# With NUDGE_CONSUMER_INSTALL_FROM=<build dir>, step 1 installs that (configured) build tree
# instead of building the library again.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${1:-}
if [[ -z "$work" ]]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/nudge-consumer.XXXXXX")
  trap 'rm -rf "$work"' EXIT
else
  rm -rf "$work"
  mkdir -p "$work"
fi
jobs=${NUDGE_JOBS:-2}
# Both builds of the library from source are unity builds (as in scripts/test.sh): the check is
# that the package and the subproject work, and this compiles nudge in a third of the time.

step() { printf '== consumer: %s\n' "$*"; }

if [[ -n "${NUDGE_CONSUMER_INSTALL_FROM:-}" ]]; then
  # A tree the caller has just built (scripts/test.sh passes its normal build): install it.
  step "install nudge from $NUDGE_CONSUMER_INSTALL_FROM into $work/prefix"
  cmake --build "$NUDGE_CONSUMER_INSTALL_FROM" -j "$jobs"
  cmake --install "$NUDGE_CONSUMER_INSTALL_FROM" --prefix "$work/prefix" >/dev/null
else
  # Only the library: the consumer needs no tests, examples, tools or bindings.
  step "build and install nudge into $work/prefix"
  cmake -S "$src" -B "$work/nudge-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DNUDGE_INSTALL=ON -DNUDGE_BUILD_TESTS=OFF -DNUDGE_BUILD_EXAMPLES=OFF \
    -DNUDGE_BUILD_BENCH=OFF -DNUDGE_BUILD_CLI=OFF -DNUDGE_BUILD_PYTHON=OFF \
    -DCMAKE_UNITY_BUILD=ON >/dev/null
  cmake --build "$work/nudge-build" -j "$jobs"
  cmake --install "$work/nudge-build" --prefix "$work/prefix" >/dev/null
fi
test -f "$work/prefix/lib/cmake/nudge/nudgeConfig.cmake" -o \
     -f "$work/prefix/lib64/cmake/nudge/nudgeConfig.cmake" ||
  { echo "consumer: nudgeConfig.cmake was not installed" >&2; exit 1; }

step "find_package(nudge) against the installed prefix"
cmake -S "$src/tests/consumer" -B "$work/package" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DNUDGE_CONSUMER_MODE=package -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/package" -j "$jobs"
"$work/package/consumer"

step "add_subdirectory of the source tree"
cmake -S "$src/tests/consumer" -B "$work/subdirectory" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DNUDGE_CONSUMER_MODE=subdirectory -DNUDGE_SOURCE_DIR="$src" -DCMAKE_UNITY_BUILD=ON >/dev/null
cmake --build "$work/subdirectory" -j "$jobs"
"$work/subdirectory/consumer"

step "both ways work"
