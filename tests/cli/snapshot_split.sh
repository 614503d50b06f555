#!/bin/sh
# snapshot_split.sh NUDGE SUPPORT_DIR W1_EXAMPLE_DIR WORK_DIR: replays the first half of a W1
# data set (tests/support/gen_w1.py: 1,000 contacts, 20,000 events, seed 2) with --save-snapshot,
# then the second half in a new process with --load-snapshot, and checks that the two outputs
# together equal an uninterrupted replay byte for byte.
nudge=$1 support=$2 example=$3 work=$4
python=/usr/bin/python3
set -e
mkdir -p "$work"
"$python" "$support/gen_w1.py" --contacts 1000 --events 20000 --days 90 --seed 2 --quiet \
  --out "$work/data"
"$python" "$example/make_rules.py" --filler 20 > "$work/rules.json"
# Split after the first 10,000 events, moving on to the next distinct timestamp.
"$python" - "$work" <<'PY'
import sys
work = sys.argv[1]
lines = open(f"{work}/data/events.csv").read().splitlines(keepends=True)
header, rows = lines[0], lines[1:]
cut = len(rows) // 2
ts = lambda row: row.split(",", 1)[0]
while ts(rows[cut]) == ts(rows[cut - 1]):
    cut += 1
open(f"{work}/first.csv", "w").writelines([header] + rows[:cut])
open(f"{work}/second.csv", "w").writelines([header] + rows[cut:])
open(f"{work}/mid", "w").write(str(int(ts(rows[cut])) - 1))
PY
rules="$work/rules.json"
"$nudge" replay --rules "$rules" --contacts "$work/data/contacts.csv" \
  --events "$work/data/events.csv" --time-format epoch --out "$work/whole.csv"
rm -f "$work/state.snap"
"$nudge" replay --rules "$rules" --contacts "$work/data/contacts.csv" --events "$work/first.csv" \
  --until "$(cat "$work/mid")" --time-format epoch --save-snapshot "$work/state.snap" \
  --out "$work/first_actions.csv"
# The default end of the second run is its last event plus the longest delay, as for the whole.
"$nudge" replay --rules "$rules" --events "$work/second.csv" --load-snapshot "$work/state.snap" \
  --time-format epoch --out "$work/second_actions.csv"
{ cat "$work/first_actions.csv"; tail -n +2 "$work/second_actions.csv"; } > "$work/split.csv"
if cmp -s "$work/whole.csv" "$work/split.csv"; then
  echo "identical: $(wc -l < "$work/split.csv") lines"
  exit 0
fi
echo "split replay differs from the whole (first differences, < whole, > split):"
diff "$work/whole.csv" "$work/split.csv" | head -40
exit 1
