#!/bin/sh
# identity.sh NUDGE EXAMPLES_DIR WORK_DIR: the lifecycle example (identify events merge visitors
# into known contacts, docs/rules.md "Identity") gives its expected actions from JSON Lines
# events (the known id in "key") one event per batch, and over two `nudge run` calls on one
# database, the second sending events under an id merged in the first.
nudge=$1 examples=$2 work=$3
python=/usr/bin/python3
set -e
rm -rf "$work"
mkdir -p "$work"
"$python" - "$examples/lifecycle.events.csv" "$work" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
with open(f"{sys.argv[2]}/events.jsonl", "w") as out:
    for r in rows:
        e = {"ts": int(r["ts"]), "contact": r["contact"], "type": r["type"]}
        if r["key"]:
            e["key"] = r["key"]
        if r["value"]:
            e["props"] = {"value": float(r["value"])}
        out.write(json.dumps(e) + "\n")
with open(f"{sys.argv[2]}/first.csv", "w") as out:
    out.write("ts,contact,type,key,value\n")
    for r in rows[:4]:  # up to and including v1's identify event
        out.write(",".join(r[k] for k in ("ts", "contact", "type", "key", "value")) + "\n")
PY
tail -n +2 "$examples/lifecycle.expected.csv" > "$work/expected.csv"
"$nudge" replay --rules "$examples/lifecycle.rules.json" --events "$work/events.jsonl" \
  --time-format epoch --batch 1 --out "$work/replay.csv"
tail -n +2 "$work/replay.csv" | diff "$work/expected.csv" -
cp "$work/first.csv" "$work/events.csv"
"$nudge" run --db "$work/state.db" --rules "$examples/lifecycle.rules.json" \
  --events "$work/events.csv" --out "$work/run.csv"
tail -n +6 "$examples/lifecycle.events.csv" >> "$work/events.csv"
"$nudge" run --db "$work/state.db" --rules "$examples/lifecycle.rules.json" \
  --events "$work/events.csv" --out "$work/run.csv" --until 1712707200
cut -d, -f1-5 "$work/run.csv" | diff "$work/expected.csv" -
echo "identity: replay and run match lifecycle.expected.csv"
