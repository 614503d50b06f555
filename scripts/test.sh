#!/usr/bin/env bash
# Installs what is missing, then builds and runs every check CI runs:
#   1. the normal build (Release, warnings as errors, build/) and ctest: C++ tests, examples,
#      CLI tests; then the Python tests (pytest on Debian's /usr/bin/python3), run once, beside
#      ctest (its ctest entry, label "python", is left out here so that each Python test counts
#      once and pytest's own skips are seen);
#   2. the sanitizer build (AddressSanitizer + UBSan, Debug, build-asan/) and ctest;
#   3. the libFuzzer targets (clang-14, -DNUDGE_FUZZ=ON, build-fuzz/), each run briefly over its
#      seed corpus (tests/fuzz/run_fuzz.sh; docs/fuzzing.md);
#   4. a consumer project using the installed package and add_subdirectory;
#   5. README.md's quick start is the code tests/readme_test.cpp compiles;
#   6. clang-format 14 over every tracked .hpp/.cpp.
# Ends with "N passed, M failed, K skipped" (ctest and pytest counts, one per fuzz target; a stage
# that fails outright, such as a build, adds one to M; K counts ctest's skipped tests, exit 77,
# and pytest's skips, none of which is counted as passed) and exits non-zero if anything failed.
# Environment: NUDGE_BUILD_DIR (build), NUDGE_ASAN_BUILD_DIR (build-asan), NUDGE_JOBS (2),
# NUDGE_FUZZ_BUILD_DIR (build-fuzz), NUDGE_FUZZ_SECONDS (12: per fuzz target).
#
# Time (a bare clone, 2 cores, no ccache; "fast_build" below says what changed), wall seconds on
# a quiet machine: before (db2ebe5) 1442 s; after (unity builds + test PCH + no header TUs
# under ASan; b75985c, with the PostgreSQL tests added) 1371 s:
#   stage                         before    after
#   normal build                  455 s     384 s
#   ctest + pytest                61 s      84 s (the pg tests: ~15 s)
#   sanitizer build               478 s     478 s (mostly the Catch2 test bodies at -O0)
#   sanitizer ctest               97 s      152 s
#   fuzz build                    164 s     132 s
#   fuzz runs (5 x 12 s)          66 s      65 s
#   consumer                      120 s     73 s
# Next: nudge_tests as a unity build (its files reuse helper names in anonymous namespaces).
# The library alone: 264 -> 105 CPU-s as a unity build (Release).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
build=${NUDGE_BUILD_DIR:-build}
asan_build=${NUDGE_ASAN_BUILD_DIR:-build-asan}
fuzz_build=${NUDGE_FUZZ_BUILD_DIR:-build-fuzz}
fuzz_seconds=${NUDGE_FUZZ_SECONDS:-12}
jobs=${NUDGE_JOBS:-2}
python=/usr/bin/python3

passed=0
failed=0
skipped=0
failures=()
start=$SECONDS

# CI has two cores and no compiler cache, and compiling is most of its time: the library, the
# CLI, the bindings, the examples and the fuzz targets are unity builds (CMake merges a target's
# sources 8 to a translation unit, so the heavy headers are parsed and their templates compiled
# once per 8 files), the Catch2 tests share a precompiled header (tests/CMakeLists.txt says why
# they are not a unity build), and the sanitizer build leaves the header-alone compile check
# (tests/headers) to the normal build. Same tests, same counts.
fast_build=(-DCMAKE_UNITY_BUILD=ON -DNUDGE_TESTS_PCH=ON)

step() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - start)); }
stage_failed() {
  failed=$((failed + 1))
  failures+=("$1")
  printf '!! FAILED: %s\n' "$1"
}
finish() {
  printf '\n== done in %ds\n' $((SECONDS - start))
  for f in "${failures[@]}"; do printf 'failed: %s\n' "$f"; done
  printf '%d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
  ((failed == 0))
  exit
}

# Runs ctest in $1 (more ctest options after the name) and adds its counts; a run with no tests
# at all is a failure. ctest counts a skipped test (SKIP_RETURN_CODE) as passed in its summary
# line; those listed "(Skipped)" are moved to the skipped count.
run_ctest() {
  local dir=$1 name=$2 log
  shift 2
  log=$(mktemp)
  ctest --test-dir "$dir" -j "$jobs" --output-on-failure --no-tests=error --timeout 600 "$@" \
    2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local summary
  summary=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  local nskip
  nskip=$(grep -cE '^[[:space:]]*[0-9]+ - .* \(Skipped\)$' "$log")
  rm -f "$log"
  if [[ -n "$summary" ]]; then
    local nfail total
    nfail=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$summary")
    total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$summary")
    passed=$((passed + total - nfail - nskip))
    failed=$((failed + nfail))
    skipped=$((skipped + nskip))
    ((nfail > 0)) && failures+=("$name: $nfail of $total tests")
    ((rc != 0 && nfail == 0)) && stage_failed "$name (ctest exit $rc)"
  else
    stage_failed "$name (ctest exit $rc, no summary)"
  fi
}

# Runs pytest over tests/python when it holds tests; counts come from its JUnit report.
run_pytest() {
  shopt -s nullglob
  local tests=(tests/python/test_*.py tests/python/*_test.py)
  shopt -u nullglob
  if ((${#tests[@]} == 0)); then
    echo "no Python tests in tests/python: skipped"
    return
  fi
  local report rc
  report=$(mktemp --suffix .xml)
  PYTHONPATH="$root/$build/bindings/python${PYTHONPATH:+:$PYTHONPATH}" \
    NUDGE_CLI="$root/$build/src/cli/nudge" \
    "$python" -m pytest -q -p no:cacheprovider --junitxml="$report" tests/python </dev/null
  rc=$?
  local counts
  counts=$("$python" - "$report" <<'PY'
import sys, xml.etree.ElementTree as et
try:
    root = et.parse(sys.argv[1]).getroot()
except Exception:
    print("0 0 0"); sys.exit()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
k = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - k, f, k)
PY
)
  rm -f "$report"
  local np nf nk
  read -r np nf nk <<<"$counts"
  passed=$((passed + np))
  failed=$((failed + nf))
  skipped=$((skipped + nk))
  ((nf > 0)) && failures+=("pytest: $nf tests")
  # Exit 5 means pytest collected nothing although test files exist: a failure too.
  ((rc != 0 && nf == 0)) && stage_failed "pytest (exit $rc)"
}

step "setup"
bash scripts/setup.sh || { stage_failed "setup"; finish; }

step "normal build: $build (Release, -DNUDGE_WERROR=ON)"
normal_build_ok=0
if cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNUDGE_WERROR=ON \
     -DNUDGE_SANITIZE=OFF "${fast_build[@]}" && cmake --build "$build" -j "$jobs"; then
  normal_build_ok=1
  step "ctest: $build"
  run_ctest "$build" "ctest $build" --label-exclude '^python$'
  step "pytest: tests/python"
  run_pytest
else
  stage_failed "build $build"
fi

step "sanitizer build: $asan_build (Debug, -DNUDGE_SANITIZE=ON)"
if cmake -S . -B "$asan_build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DNUDGE_WERROR=ON \
     -DNUDGE_SANITIZE=ON -DNUDGE_BUILD_PYTHON=OFF -DNUDGE_BUILD_BENCH=OFF \
     -DNUDGE_HEADER_TESTS=OFF "${fast_build[@]}" &&
   cmake --build "$asan_build" -j "$jobs"; then
  step "ctest: $asan_build"
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    run_ctest "$asan_build" "ctest $asan_build"
else
  stage_failed "build $asan_build"
fi

step "fuzz build: $fuzz_build (clang-14, libFuzzer + ASan + UBSan)"
# Only the library and the fuzz targets: everything built in this tree is instrumented.
# Warnings stay warnings here: the normal build (GCC, -Werror) is the warnings gate, and a
# clang-only warning should not fail the fuzzing stage.
if cmake -S . -B "$fuzz_build" -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DNUDGE_FUZZ=ON \
     -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNUDGE_WERROR=OFF -DNUDGE_SANITIZE=OFF \
     -DNUDGE_BUILD_TESTS=OFF -DNUDGE_BUILD_EXAMPLES=OFF -DNUDGE_BUILD_BENCH=OFF \
     -DNUDGE_BUILD_CLI=OFF -DNUDGE_BUILD_PYTHON=OFF -DNUDGE_INSTALL=OFF \
     -DCMAKE_UNITY_BUILD=ON &&
   cmake --build "$fuzz_build" -j "$jobs" --target nudge_fuzzers; then
  for target in load_rules events_csv events_jsonl contacts differential; do
    step "fuzz: fuzz_$target (${fuzz_seconds}s over tests/fuzz/corpus/$target)"
    if bash tests/fuzz/run_fuzz.sh "$fuzz_build/tests/fuzz" "$fuzz_seconds" "$target"; then
      passed=$((passed + 1))
    else
      stage_failed "fuzz_$target (crash input and log in $fuzz_build/tests/fuzz/work/$target)"
    fi
  done
else
  stage_failed "build $fuzz_build"
fi

step "consumer: find_package and add_subdirectory"
# The normal build is installed as it is (with the CLI, if built); if it failed, build afresh.
if ((normal_build_ok)); then
  NUDGE_CONSUMER_INSTALL_FROM="$root/$build" bash scripts/check_consumer.sh
else
  bash scripts/check_consumer.sh
fi || stage_failed "consumer check"

step "readme: quick start matches tests/readme_test.cpp"
"$python" scripts/check_readme.py || stage_failed "readme snippet"

step "format: clang-format 14"
clang_format=$(command -v clang-format-14 || command -v clang-format || true)
if [[ -z "$clang_format" ]]; then
  stage_failed "format (clang-format not found)"
else
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t sources < <(git ls-files '*.hpp' '*.cpp')
  else
    mapfile -t sources < <(find include src tests examples bench bindings -name '*.[hc]pp' \
                             2>/dev/null | sort)
  fi
  if ((${#sources[@]} == 0)) || "$clang_format" --dry-run -Werror "${sources[@]}"; then
    echo "format: ${#sources[@]} files clean"
  else
    stage_failed "format (run: $clang_format -i <file> on the files above)"
  fi
fi

finish
