#!/bin/sh
# hostile_input.sh NUDGE RULES WORKDIR CASE: generates one hostile input, runs nudge on it under
# `ulimit -v` (512 MiB of address space; the normal binary needs a few MiB), and passes when nudge
# exits 1 with the clear error (the limit, file and line) on standard error, instead of crashing,
# aborting or running out of memory. docs/limits.md lists the limits.
#
# NUDGE_NO_ULIMIT=1 (the sanitizer build: AddressSanitizer reserves terabytes of address space
# for its shadow memory, so it cannot start under ulimit -v) runs the small cases without the
# limit and skips (exit 77) the ones whose point is the memory bound.
set -u
nudge=$1
rules=$2
work=$3/$4
case_name=$4
limit_kib=524288
rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1

big() {
  if [ "${NUDGE_NO_ULIMIT:-0}" = 1 ]; then
    echo "skipped: $case_name needs ulimit -v, which AddressSanitizer builds cannot run under"
    exit 77
  fi
}

# x repeated $1 times, without a newline.
repeat_x() {
  head -c "$1" /dev/zero | tr '\0' x
}

# expect PATTERN COMMAND...: exit code 1 and a line of standard error matching PATTERN (grep -E).
expect() {
  pattern=$1
  shift
  if [ "${NUDGE_NO_ULIMIT:-0}" = 1 ]; then
    "$@" >/dev/null 2>stderr.txt
  else
    (ulimit -v $limit_kib && exec "$@") >/dev/null 2>stderr.txt
  fi
  code=$?
  head -c 2000 stderr.txt
  if [ "$code" -ne 1 ]; then
    echo "hostile_input.sh: $case_name: exit code $code, expected 1" >&2
    exit 1
  fi
  if ! grep -Eq -- "$pattern" stderr.txt; then
    echo "hostile_input.sh: $case_name: no line of standard error matches: $pattern" >&2
    exit 1
  fi
  rm -rf "$work"
  echo "$case_name: refused with the clear error"
}

header=ts,contact,type,key,value
good=1704067200,c1,signup,,
case $case_name in
  rule_file_200mb_string)
    big
    { printf '{"rules": [{"id": "'; repeat_x 200000000; printf '"}]}\n'; } >rules.json
    expect '^rules\.json: the rule file has 200000024 bytes; at most 67108864 are allowed \(max_text_bytes\)$' \
      "$nudge" check rules.json ;;
  rule_file_nested_100k)
    big
    { repeat_x 100000 | tr x '['; repeat_x 100000 | tr x ']'; } >rules.json
    expect '^rules\.json:1:145: JSON nested deeper than 144 levels$' "$nudge" check rules.json ;;
  rule_string_too_long)
    { printf '{"rules": [{"id": "'; repeat_x 100000; printf '"}]}\n'; } >rules.json
    expect '^rules\.json:1:19: /rules/0/id: a string of 100000 bytes; at most 65536 are allowed \(max_string_bytes\)$' \
      "$nudge" check rules.json ;;
  event_line_200mb)
    # simdjson would need several times the line's size to parse it.
    big
    { echo '{"ts": 1704067200, "contact": "c1", "type": "signup"}'
      printf '{"ts": 1704067201, "contact": "c1", "type": "signup", "props": {"note": "'
      repeat_x 200000000; echo '"}}'; } >events.jsonl
    expect '^events\.jsonl:2: line is 200000076 bytes long; at most 1048576 are allowed \(max_line_bytes\)$' \
      "$nudge" replay --rules "$rules" --events events.jsonl ;;
  event_key_1m)
    big
    { echo '{"ts": 1704067200, "contact": "c1", "type": "signup"}'
      printf '{"ts": 1704067201, "contact": "c1", "type": "signup", "'; repeat_x 1000000
      echo '": 1}'; } >events.jsonl
    expect '^events\.jsonl:2: a field name is 1000000 bytes long; at most 1024 are allowed \(max_name_bytes\)$' \
      "$nudge" replay --rules "$rules" --events events.jsonl ;;
  event_contact_too_long)
    { echo $header; echo $good; printf '1704067201,'; repeat_x 2000; echo ',signup,,'; } >events.csv
    expect '^events\.csv:3: contact is 2000 bytes long; at most 1024 are allowed \(max_name_bytes\)$' \
      "$nudge" replay --rules "$rules" --events events.csv ;;
  event_time_out_of_range)
    { echo $header; echo $good; echo '253402300800,c1,purchase,o1,5'; } >events.csv
    expect '^events\.csv:3: ts 253402300800 is outside the supported range \(1900-01-01T00:00:00Z to 9799-12-31T23:59:59Z\)$' \
      "$nudge" replay --rules "$rules" --events events.csv ;;
  event_amount_nan)
    { echo $header; echo $good; echo '1704067201,c1,purchase,o1,nan'; } >events.csv
    expect '^events\.csv:3: value "nan" is not a finite number$' \
      "$nudge" replay --rules "$rules" --events events.csv ;;
  run_amount_nan)
    # nudge run reads in chunks of --batch lines; the error names the line of the file.
    { echo $header; i=0; while [ $i -lt 7 ]; do echo "$((1704067200 + i)),c1,page_view,/x,"
      i=$((i + 1)); done; echo '1704067300,c1,purchase,o1,nan'; } >events.csv
    expect '^events\.csv:9: value "nan" is not a finite number$' \
      "$nudge" run --db state.db --rules "$rules" --events events.csv --out out.csv --batch 2 ;;
  contacts_duplicate_ids)
    { echo contact,status; i=0; while [ $i -lt 4 ]; do echo c1,lead; i=$((i + 1)); done; } >contacts.csv
    { echo $header; echo $good; } >events.csv
    expect '^contacts\.csv:3: duplicate contact "c1" \(first on line 2\)$' \
      "$nudge" replay --rules "$rules" --contacts contacts.csv --events events.csv ;;
  events_per_contact_150k)
    big
    awk -v n=150000 'BEGIN { print "ts,contact,type,key,value"; for (i = 0; i < n; i++)
      printf "%d,c1,page_view,/p/%d,\n", 1704067200 + i, i % 7 }' >events.csv
    # Replay's own batches (16,384 events by default) split the contact's events: it runs.
    if ! (ulimit -v $limit_kib && exec "$nudge" replay --rules "$rules" --events events.csv \
        --out out.csv) 2>stderr.txt || ! grep -q '^150000 events read' stderr.txt; then
      cat stderr.txt
      echo "hostile_input.sh: $case_name: the default batches should have split it" >&2
      exit 1
    fi
    # In one batch (--batch 0) the engine's limit refuses it, naming the event.
    expect '^event 100000 \(contact "c1"\): more than 100000 events for one contact in one batch \(engine_options::max_events_per_contact\); split the batch$' \
      "$nudge" replay --rules "$rules" --events events.csv --batch 0 ;;
  *)
    echo "hostile_input.sh: unknown case $case_name" >&2
    exit 2 ;;
esac
