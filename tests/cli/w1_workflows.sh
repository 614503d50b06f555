#!/bin/sh
# w1_workflows.sh NUDGE WORKLOAD_DIR W1_EXAMPLE_DIR BENCH_DIR WORK_DIR: W1 small with the
# workflow benchmark's 50 workflows and 20 segments added (bench/make_workflow_rules.py): the file
# must load, the workflows must emit actions, and the W1 rules' own actions (rows whose rule is not
# "workflow/step") must equal the reference of W1 alone byte for byte: workflows and segments
# next to the rules change nothing the rules do. Exit 77 (skipped) without ../shared.
nudge=$1 workload=$2 example=$3 bench=$4 work=$5
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
"$python" "$bench/make_workflow_rules.py" "$work/rules_k100.json" --workflows 50 --segments 20 \
  > "$work/rules_wf.json"
gunzip -c "$workload/small_expected_k100.csv.gz" > "$work/expected.csv"
"$nudge" replay --rules "$work/rules_wf.json" --contacts "$work/w1-small/contacts.csv" \
  --events "$work/w1-small/events.csv" --time-format epoch --out "$work/actions.csv"
awk -F, 'NR == 1 || $3 !~ /\//' "$work/actions.csv" > "$work/w1_part.csv"
workflow_rows=$(awk -F, '$3 ~ /\//' "$work/actions.csv" | wc -l)
if [ "$workflow_rows" -eq 0 ]; then
  echo "the workflows emitted nothing"
  exit 1
fi
if cmp -s "$work/expected.csv" "$work/w1_part.csv"; then
  echo "W1 actions identical: $(wc -l < "$work/w1_part.csv") lines; workflow actions: $workflow_rows"
  exit 0
fi
echo "W1 actions differ from the reference (first differences, < expected, > got):"
diff "$work/expected.csv" "$work/w1_part.csv" | head -40
exit 1
