#!/bin/sh
# nudge explain --db: a contact's timeline, pending timers and undelivered actions read from a
# live database. The run's --out is /dev/full, so its actions stay in the outbox (docs/live.md).
# Usage: explain_db.sh NUDGE WORKDIR (run in tests/cli)
set -eu
nudge=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
if "$nudge" run --db "$work/state.db" --rules timeline_rules.json --contacts contacts.csv \
    --events events.csv --until 2024-01-10T00:00:00Z --out /dev/full 2> "$work/run.err"; then
  echo "nudge run into /dev/full must fail"; exit 1
fi
"$nudge" explain --db "$work/state.db" --contact c1 > "$work/c1.txt"
sed "s|@DB@|$work/state.db|" explain_db_c1.expected | diff - "$work/c1.txt"
"$nudge" explain --db "$work/state.db" --contact c1 --json > "$work/c1.json"
/usr/bin/python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["contact"] == "c1" and j["engine_now"] == "2024-01-10T00:00:00Z", j
assert [p["at"] for p in j["pending"]] == ["2024-01-15T00:00:00Z", "2024-03-01T01:00:00Z"], j
assert [o["arg"] for o in j["outbox"]] == ["welcome_1", "celina", "coupon", "coupon", "welcome_2"], j["outbox"]
' "$work/c1.json"
if "$nudge" explain --db "$work/state.db" --contact zz 2> "$work/zz.err"; then exit 1; fi
grep -qx "contact \"zz\" is not in the database $work/state.db" "$work/zz.err"
echo "explain --db: same"
