#!/bin/sh
# w1_small.sh NUDGE SUPPORT_DIR W1_EXAMPLE_DIR WORK_DIR: W1 small (1,000 contacts, 20,000 events,
# 90 days) from the project's generator (tests/support/gen_w1.py), seeds 1 and 2, replayed by
# `nudge replay --time-format epoch` with the rule files for K = 100 and K = 7
# (examples/w1/make_rules.py); each output must equal the independent oracle's
# (tests/support/w1_reference.py) byte for byte.
nudge=$1 support=$2 example=$3 work=$4
python=/usr/bin/python3
set -e
mkdir -p "$work"
status=0
for seed in 1 2; do
  data="$work/seed$seed"
  "$python" "$support/gen_w1.py" --contacts 1000 --events 20000 --days 90 --seed "$seed" \
    --quiet --out "$data"
  for k in 100 7; do
    "$python" "$example/make_rules.py" --filler "$k" > "$work/rules_k$k.json"
    "$python" "$support/w1_reference.py" --contacts "$data/contacts.csv" \
      --events "$data/events.csv" --filler "$k" --out "$data/expected_k$k.csv"
    "$nudge" replay --rules "$work/rules_k$k.json" --contacts "$data/contacts.csv" \
      --events "$data/events.csv" --time-format epoch --out "$data/actions_k$k.csv"
    if cmp -s "$data/expected_k$k.csv" "$data/actions_k$k.csv"; then
      echo "seed $seed, K = $k: identical, $(wc -l < "$data/actions_k$k.csv") lines"
    else
      echo "seed $seed, K = $k: actions differ from the oracle's (< oracle, > nudge):"
      diff "$data/expected_k$k.csv" "$data/actions_k$k.csv" | head -40 || true
      status=1
    fi
  done
done
exit $status
