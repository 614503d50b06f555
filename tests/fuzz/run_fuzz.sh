#!/usr/bin/env bash
# run_fuzz.sh BUILD_DIR [SECONDS] [TARGET...]: runs each fuzz target (default: all five) for
# SECONDS (default 15) over a copy of its seed corpus tests/fuzz/corpus/<target>, so new inputs
# never land in the source tree. BUILD_DIR holds the fuzz_* executables (build-fuzz/tests/fuzz
# for a tree configured with -DNUDGE_FUZZ=ON); the copies go to BUILD_DIR/work/<target>.
# Prints one line per target: "fuzz_<target>: ok, <runs> runs, cov <edges>, <corpus> inputs"
# or "fuzz_<target>: FAILED ... (input: <crash file>)". Exits non-zero if any target failed.
set -uo pipefail
build=$(cd "$1" && pwd) seconds=${2:-15}
shift $(($# >= 2 ? 2 : $#))
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
targets=("$@")
((${#targets[@]})) || targets=(load_rules events_csv events_jsonl contacts differential)

status=0
for t in "${targets[@]}"; do
  work=$build/work/$t
  rm -rf "$work" && mkdir -p "$work/corpus"
  cp "$here/corpus/$t"/* "$work/corpus/"
  # Rule files and event files can be long; the differential target reads a few KB at most.
  max_len=65536
  [[ $t == differential ]] && max_len=4096
  "$build/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -max_len=$max_len -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" \
    >"$work/log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
  cov=$(grep -oE 'cov: [0-9]+' "$work/log" | tail -1 | cut -d' ' -f2)
  inputs=$(find "$work/corpus" -type f | wc -l)
  if ((rc == 0)); then
    echo "fuzz_$t: ok, ${runs:-?} runs in ${seconds} s, cov ${cov:-?}, $inputs inputs"
  else
    crash=$(find "$work" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'leak-*' \
              -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'oom-*' | head -1)
    echo "fuzz_$t: FAILED (exit $rc) after ${runs:-?} runs (input: ${crash:-none}; log: $work/log)"
    grep -E -A30 'ERROR|mismatch|refused' "$work/log" | head -60
    status=1
  fi
done
exit $status
