#!/usr/bin/env python3
"""nudge diff on examples/rules/wf_abandoned_cart (docs: README, "What if").

1. The rule file against itself: "no differences", exit 0, empty added/removed files.
2. Against a copy whose second reminder waits 2 days instead of 1: exactly the actions worked out
   by hand below, in the report, added.csv, removed.csv and summary.csv.

The events: c1 puts items in the cart at 2024-01-01 00:00 (and again at 00:10, inside the same
run); c2 at 00:00, buys at 02:00 (after reminder_1 at 01:00), puts items in the cart again on
2024-01-02 at 00:00 (a new run: reminder_1 at 01:00); c3 buys before any reminder. The steps:
wait 1h, reminder_1, wait 1d, reminder_2, wait 2d, reminder_3. With wait_1d at 2d, reminder_2
comes a day later for both runs that reach it, and reminder_3 (2 days after it) too.

    diff.py NUDGE EXAMPLES_RULES_DIR WORKDIR
"""
import json
import os
import shutil
import subprocess
import sys

R2 = "abandoned_cart/reminder_2,send_email,cart_reminder_2"
R3 = "abandoned_cart/reminder_3,send_sms,cart_reminder_3"
REMOVED = [
    f"2024-01-02T01:00:00Z,c1,{R2}",
    f"2024-01-03T01:00:00Z,c2,{R2}",
    f"2024-01-04T01:00:00Z,c1,{R3}",
    f"2024-01-05T01:00:00Z,c2,{R3}",
]
ADDED = [
    f"2024-01-03T01:00:00Z,c1,{R2}",
    f"2024-01-04T01:00:00Z,c2,{R2}",
    f"2024-01-05T01:00:00Z,c1,{R3}",
    f"2024-01-06T01:00:00Z,c2,{R3}",
]
HEADER = "ts,contact,rule,action,arg"


def main(nudge, examples, work):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    old = os.path.join(examples, "wf_abandoned_cart.rules.json")
    events = os.path.join(examples, "wf_abandoned_cart.events.csv")
    rules = json.load(open(old))
    step = rules["workflows"][0]["steps"][2]
    assert step == {"id": "wait_1d", "wait": "1d"}, step
    step["wait"] = "2d"
    new = os.path.join(work, "wait_2d.rules.json")
    with open(new, "w") as f:
        json.dump(rules, f, indent=2)

    def diff(a, b, out):
        r = subprocess.run([nudge, "diff", "--rules", a, "--rules", b, "--events", events,
                            "--out", out], capture_output=True, text=True)
        print(r.stdout, r.stderr, sep="")
        assert r.returncode == 0, r.returncode
        return r.stdout.splitlines()

    def lines(path):
        return open(path).read().splitlines()

    # 1. Itself.
    same = os.path.join(work, "same")
    out = diff(old, old, same)
    assert out[-1] == "no differences", out
    assert out[0] == f"old: {old}: 7 actions (until 2024-01-05T01:00:00Z)", out[0]
    assert lines(os.path.join(same, "added.csv")) == [HEADER]
    assert lines(os.path.join(same, "removed.csv")) == [HEADER]
    assert lines(os.path.join(same, "summary.csv")) == ["rule,added,removed,contacts"]

    # 2. reminder_2 waits 2 days.
    changed = os.path.join(work, "changed")
    out = diff(old, new, changed)
    assert lines(os.path.join(changed, "added.csv")) == [HEADER] + ADDED
    assert lines(os.path.join(changed, "removed.csv")) == [HEADER] + REMOVED
    assert lines(os.path.join(changed, "summary.csv")) == [
        "rule,added,removed,contacts",
        "abandoned_cart/reminder_2,2,2,2",
        "abandoned_cart/reminder_3,2,2,2",
    ]
    expected = [
        # Both to the later default end: the new version's (one day longer).
        f"old: {old}: 7 actions (until 2024-01-06T01:00:00Z)",
        f"new: {new}: 7 actions (until 2024-01-06T01:00:00Z)",
        "4 added, 4 removed, 2 contacts affected",
        "",
        "rule                          added   removed  contacts",
        "abandoned_cart/reminder_2         2         2         2",
        "abandoned_cart/reminder_3         2         2         2",
        "",
        "day (UTC)      added   removed",
        "2024-01-02         0         1",
        "2024-01-03         1         1",
        "2024-01-04         1         1",
        "2024-01-05         1         1",
        "2024-01-06         1         0",
        "",
        "contacts with actions added and removed: 2",
        "  c1",
        f"    - {REMOVED[0]}",
        f"    - {REMOVED[2]}",
        f"    + {ADDED[0]}",
        f"    + {ADDED[2]}",
        "  c2",
        f"    - {REMOVED[1]}",
        f"    - {REMOVED[3]}",
        f"    + {ADDED[1]}",
        f"    + {ADDED[3]}",
    ]
    assert out == expected, "\n".join(out)

    # 3. One --rules is a usage error.
    r = subprocess.run([nudge, "diff", "--rules", old, "--events", events], capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stderr == (
        "--rules must be given twice: --rules OLD.json --rules NEW.json\n"), r
    print("nudge diff: as computed by hand")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
