#!/bin/sh
# w1_workflows.sh NUDGE SUPPORT_DIR W1_EXAMPLE_DIR BENCH_DIR WORK_DIR: W1 small with the
# workflow benchmark's 50 workflows and 20 segments added (bench/make_workflow_rules.py): the file
# must load, the workflows must emit actions, and the W1 rules' own actions (rows whose rule is not
# "workflow/step") must equal W1 alone byte for byte, as the oracle (tests/support/w1_reference.py)
# computes it: workflows and segments next to the rules change nothing the rules do. The data
# come from tests/support/gen_w1.py (1,000 contacts, 20,000 events, seed 1).
nudge=$1 support=$2 example=$3 bench=$4 work=$5
python=/usr/bin/python3
set -e
mkdir -p "$work"
"$python" "$support/gen_w1.py" --contacts 1000 --events 20000 --days 90 --seed 1 --quiet \
  --out "$work/w1-small"
"$python" "$example/make_rules.py" --filler 100 > "$work/rules_k100.json"
"$python" "$bench/make_workflow_rules.py" "$work/rules_k100.json" --workflows 50 --segments 20 \
  > "$work/rules_wf.json"
"$python" "$support/w1_reference.py" --contacts "$work/w1-small/contacts.csv" \
  --events "$work/w1-small/events.csv" --filler 100 --out "$work/expected.csv"
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
echo "W1 actions differ from the oracle's (first differences, < expected, > got):"
diff "$work/expected.csv" "$work/w1_part.csv" | head -40
exit 1
