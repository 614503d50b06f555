#!/usr/bin/env bash
# Installs what is missing, builds nudge (Release, in build/) and runs the shop demo: a shop
# replaying a few simulated weeks through the seed rules, printing the actions due and the
# per-rule statistics. Extra arguments go to the demo.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${NUDGE_BUILD_DIR:-build}
jobs=${NUDGE_JOBS:-2}

bash scripts/setup.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
if ! cmake --build "$build" -j "$jobs" --target nudge_shop_demo; then
  if [[ ! -f examples/shop_demo.cpp ]]; then
    echo "demo: examples/shop_demo.cpp is not in this checkout yet" >&2
  fi
  exit 1
fi
exec "$build/examples/nudge_shop_demo" "$@"
