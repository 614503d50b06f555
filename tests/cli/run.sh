#!/bin/sh
# run.sh EXIT_CODE PATTERN COMMAND...: runs COMMAND; passes when it exits with EXIT_CODE and its
# output (stdout and stderr together) has a line matching PATTERN (grep -E).
expected=$1
pattern=$2
shift 2
output=$("$@" 2>&1)
code=$?
printf '%s\n' "$output"
if [ "$code" -ne "$expected" ]; then
  echo "run.sh: exit code $code, expected $expected" >&2
  exit 1
fi
if ! printf '%s\n' "$output" | grep -Eq -- "$pattern"; then
  echo "run.sh: no output line matches: $pattern" >&2
  exit 1
fi
