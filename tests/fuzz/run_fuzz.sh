#!/bin/sh
# run_fuzz.sh BUILD_DIR [SECONDS]: runs each fuzz target for SECONDS (default 15) on a copy of its
# seed corpus (tests/fuzz/corpus/<target>), so new inputs never land in the source tree.
# Exit status: the first failing target's (a crash leaves crash-* files in BUILD_DIR/work).
set -e
build=$1 seconds=${2:-15}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$build/work"
for t in load_rules events_csv events_jsonl contacts; do
  rm -rf "$build/work/$t" && mkdir -p "$build/work/$t"
  cp "$here/corpus/$t"/* "$build/work/$t/"
  echo "== fuzz_$t ($seconds s)"
  (cd "$build/work" && "../fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=1024 \
      -max_len=65536 "$t" 2>&1 | tail -3)
done
