#!/bin/sh
# nudge replay --out FILE writes the actions as they come, under FILE.part, renamed at the end:
# a replay that fails (here at line 5, after batches of one event already wrote actions) leaves
# neither a partial FILE nor FILE.part, and an older FILE of that name untouched.
# Usage: replay_out.sh NUDGE WORKDIR (run from tests/cli).
set -eu
nudge=$1
dir=$2
mkdir -p "$dir"
out="$dir/actions.csv"
rm -f "$out" "$out.part"
echo "older file" > "$out"
if "$nudge" replay --rules ok_rules.json --contacts contacts.csv --events bad_events.csv \
    --batch 1 --out "$out" 2> "$dir/stderr.txt"; then
  echo "FAIL: the replay of bad_events.csv succeeded"; exit 1
fi
grep -q "^bad_events.csv:5: ts 1704067000 is before" "$dir/stderr.txt" || { cat "$dir/stderr.txt"; exit 1; }
[ "$(cat "$out")" = "older file" ] || { echo "FAIL: the older file was changed"; exit 1; }
[ ! -e "$out.part" ] || { echo "FAIL: $out.part was left behind"; exit 1; }
# A replay that succeeds replaces the file with its actions, the same as on standard output.
"$nudge" replay --rules ok_rules.json --contacts contacts.csv --events events.csv --batch 1 \
  --out "$out" 2> /dev/null
"$nudge" replay --rules ok_rules.json --contacts contacts.csv --events events.csv --batch 0 \
  2> /dev/null | cmp - "$out"
[ ! -e "$out.part" ] || { echo "FAIL: $out.part was left behind"; exit 1; }
echo "replay --out: atomic"
