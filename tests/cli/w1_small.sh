#!/bin/sh
# w1_small.sh NUDGE WORKLOAD_DIR W1_EXAMPLE_DIR WORK_DIR: generates W1 small (1,000 contacts,
# 20,000 events, seed 1) and checks `nudge replay --time-format epoch` with the K = 100 rule
# file against the reference output, byte for byte. Exit 77 (skipped) without ../shared.
nudge=$1 workload=$2 example=$3 work=$4
python=/usr/bin/python3
if [ ! -f "$workload/gen_w1.py" ] || [ ! -f "$workload/small_expected_k100.csv.gz" ]; then
  echo "SKIPPED: $workload (gen_w1.py, small_expected_k100.csv.gz) not found"
  exit 77
fi
set -e
mkdir -p "$work"
if [ ! -f "$work/w1-small/events.csv" ]; then
  "$python" "$workload/gen_w1.py" --contacts 1000 --events 20000 --days 90 --seed 1 \
    --out "$work/w1-small" > /dev/null
fi
"$python" "$example/make_rules.py" --filler 100 > "$work/rules_k100.json"
gunzip -c "$workload/small_expected_k100.csv.gz" > "$work/expected.csv"
"$nudge" replay --rules "$work/rules_k100.json" --contacts "$work/w1-small/contacts.csv" \
  --events "$work/w1-small/events.csv" --time-format epoch --out "$work/actions.csv"
if cmp -s "$work/expected.csv" "$work/actions.csv"; then
  echo "identical: $(wc -l < "$work/actions.csv") lines"
  exit 0
fi
echo "actions differ from the reference (first differences, < expected, > got):"
diff "$work/expected.csv" "$work/actions.csv" | head -40
exit 1
