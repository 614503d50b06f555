#!/bin/sh
# wf_lifecycle.sh NUDGE EXAMPLES_DIR WORK_DIR: `nudge run` on one database with a changing rule
# file (docs/rules.md, "Lifecycle and versions"): the abandoned-cart workflow active, then paused
# (held waits, no entries), then active again as version 2 (held waits end at the instant the
# database had reached, runs move to version 2 by step id); a change that keeps the version
# number is refused naming the field. Compares the delivered actions to the second.
nudge=$1 examples=$2 work=$3
python=/usr/bin/python3
set -e
rm -rf "$work"
mkdir -p "$work"
cp "$examples/wf_abandoned_cart.rules.json" "$work/v1.json"
"$python" - "$work" <<'PY'
import json, sys
work = sys.argv[1]
v1 = json.load(open(f"{work}/v1.json"))
paused = json.loads(json.dumps(v1))
paused["workflows"][0]["status"] = "paused"
json.dump(paused, open(f"{work}/paused.json", "w"), indent=1)
v2 = json.loads(json.dumps(v1))
v2["workflows"][0]["version"] = 2
v2["workflows"][0]["on_new_version"] = "move_by_step_id"
v2["workflows"][0]["steps"][3]["send"]["arg"] = "cart_reminder_2b"
json.dump(v2, open(f"{work}/v2.json", "w"), indent=1)
same = json.loads(json.dumps(v2))
same["workflows"][0]["steps"][3]["send"]["arg"] = "cart_reminder_2c"
json.dump(same, open(f"{work}/v2_same_version.json", "w"), indent=1)
PY
printf 'ts,contact,type,key,value\n1704067200,c1,cart,sku1,\n1704067200,c2,cart,sku2,\n' \
  > "$work/events.csv"
# Active until 01:30: the first reminders at 01:00.
"$nudge" run --db "$work/state.db" --rules "$work/v1.json" --events "$work/events.csv" \
  --until 1704072600 --out "$work/out.csv"
# Paused from 01:30 to 2024-01-03T00:00: c1's and c2's one-day waits end during the pause
# (held), c3's cart does not enter.
printf '1704078000,c3,cart,sku3,\n' >> "$work/events.csv"
"$nudge" run --db "$work/state.db" --rules "$work/paused.json" --events "$work/events.csv" \
  --until 1704240000 --out "$work/out.csv" 2> "$work/paused.err"
grep -q "rules changed; workflows moved to them at 2024-01-01T01:30:00Z" "$work/paused.err"
# Version 2, active, from 2024-01-03T00:00 (where the database stopped): the held waits end
# there, the second reminder is version 2's, the third follows two days later.
"$nudge" run --db "$work/state.db" --rules "$work/v2.json" --events "$work/events.csv" \
  --until 1704412800 --out "$work/out.csv" 2> "$work/v2.err"
grep -q "rules changed; workflows moved to them at 2024-01-03T00:00:00Z" "$work/v2.err"
cut -d, -f1-5 "$work/out.csv" > "$work/got.csv"
cat > "$work/expected.csv" <<'CSV'
1704070800,c1,abandoned_cart/reminder_1,send_email,cart_reminder_1
1704070800,c2,abandoned_cart/reminder_1,send_email,cart_reminder_1
1704240000,c1,abandoned_cart/reminder_2,send_email,cart_reminder_2b
1704240000,c2,abandoned_cart/reminder_2,send_email,cart_reminder_2b
1704412800,c1,abandoned_cart/reminder_3,send_sms,cart_reminder_3
1704412800,c2,abandoned_cart/reminder_3,send_sms,cart_reminder_3
CSV
diff "$work/expected.csv" "$work/got.csv"
# Changed steps under the same version: refused, the database untouched.
if "$nudge" run --db "$work/state.db" --rules "$work/v2_same_version.json" \
  --events "$work/events.csv" --out "$work/out.csv" 2> "$work/same.err"; then
  echo "a changed workflow with the same version was accepted" >&2
  exit 1
fi
cat "$work/same.err"
grep -q "v2_same_version.json: /workflows/0/version: the steps of workflow \"abandoned_cart\" changed but its version is still 2" "$work/same.err"
"$nudge" run --db "$work/state.db" --rules "$work/v2.json" --events "$work/events.csv" \
  --until 1704412800 --out "$work/out.csv"
cut -d, -f1-5 "$work/out.csv" | diff "$work/expected.csv" -
echo "workflow lifecycle through nudge run: ok"
