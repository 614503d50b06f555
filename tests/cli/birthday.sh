#!/bin/sh
# birthday.sh NUDGE WORK_DIR: a contact of the contacts file with a birthday and no events gets
# its birthday message, because the contacts are upserted at the log's first event (README,
# "replay"; docs/live.md): in `nudge replay` (one batch and --batch 1) and over two `nudge run`
# calls on one database.
nudge=$1 work=$2
set -e
rm -rf "$work"
mkdir -p "$work"
cat > "$work/rules.json" <<'JSON'
{
  "version": 1,
  "rules": [],
  "workflows": [
    {"id": "birthday", "entry": {"yearly": {"detail": "birthday", "at": "09:00"}},
     "steps": [{"id": "wish", "send": {"do": "send_email", "arg": "happy_birthday"}}]}
  ]
}
JSON
printf 'contact,status,birthday\nann,lead,\ncleo,lead,1990-03-10\n' > "$work/contacts.csv"
# ann's events only, 2024-01-01 and 2024-04-01; cleo's birthday is 2024-03-10 09:00 (1710061200).
printf 'ts,contact,type,key,value\n1704067200,ann,signup,,\n' > "$work/first.csv"
cp "$work/first.csv" "$work/events.csv"
printf '1711929600,ann,page_view,/home,\n' >> "$work/events.csv"
printf 'ts,contact,rule,action,arg\n1710061200,cleo,birthday/wish,send_email,happy_birthday\n' \
  > "$work/expected.csv"
for batch in 0 1; do
  "$nudge" replay --rules "$work/rules.json" --contacts "$work/contacts.csv" \
    --events "$work/events.csv" --time-format epoch --batch "$batch" --out "$work/replay.csv"
  diff "$work/expected.csv" "$work/replay.csv"
done
# Live: the first run takes the contacts at its first event (2024-01-01), the second fires the
# birthday on its way to 2024-04-01.
"$nudge" run --db "$work/state.db" --rules "$work/rules.json" --contacts "$work/contacts.csv" \
  --events "$work/first.csv" --out "$work/run.csv"
test ! -s "$work/run.csv"
cp "$work/events.csv" "$work/first.csv"
"$nudge" run --db "$work/state.db" --rules "$work/rules.json" --contacts "$work/contacts.csv" \
  --events "$work/first.csv" --out "$work/run.csv"
cut -d, -f1-5 "$work/run.csv" > "$work/run5.csv"
tail -n +2 "$work/expected.csv" | diff - "$work/run5.csv"
echo "birthday: replay and run send cleo's birthday message"
