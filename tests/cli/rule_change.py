#!/usr/bin/env python3
"""A changed rule loaded into a live database (docs/live.md, "Changing a rule in a live
database"): pending timers of a delayed check and of a delayed action, then a rule file that
changes the delay, the condition's window and the actions:

- "on_change": "reevaluate": the pending timers fire under the new definition, the check's
  delay counted again from its trigger, the delayed action's from its check; a new time already
  past fires at the change instant;
- "on_change": "drop": the pending timers are gone; a new trigger uses the new definition;
- no "on_change", or a changed trigger: refused with its exact message, the database untouched.

Usage: rule_change.py NUDGE WORKDIR
"""
import json
import os
import shutil
import subprocess
import sys

T0 = 1704067200  # 2024-01-01T00:00:00Z
DAY = 86400


def rules(winback_delay, welcome_delay, arg_suffix, on_change=None, trigger="purchase"):
    winback = {"id": "winback", "on": {"event": trigger}, "delay": winback_delay,
               "if": {"not_happened": {"event": "purchase", "within": winback_delay}},
               "then": [{"do": "send_email", "arg": "winback" + arg_suffix}]}
    welcome = {"id": "welcome", "on": {"event": "signup"},
               "then": [{"do": "send_email", "arg": "hello"},
                        {"do": "send_email", "arg": "follow_up" + arg_suffix,
                         "delay": welcome_delay}]}
    if on_change:
        winback["on_change"] = on_change
        welcome["on_change"] = on_change
    return {"version": 1, "rules": [winback, welcome]}


def main():
    nudge, work = sys.argv[1:3]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    path = lambda name: os.path.join(work, name)

    def write_rules(name, r):
        with open(path(name), "w") as f:
            json.dump(r, f)
        return path(name)

    def run(db, rules_file, until, out):
        return subprocess.run([nudge, "run", "--db", db, "--rules", rules_file, "--events",
                               path("events.csv"), "--until", str(until), "--out", out],
                              capture_output=True, text=True)

    def actions(out):
        with open(out) as f:
            return [",".join(line.split(",")[:5]) for line in f.read().splitlines()]

    v1 = write_rules("v1.json", rules("10d", "2d", ""))
    with open(path("events.csv"), "w") as f:
        f.write("ts,contact,type,key,value\n"
                f"{T0},c1,purchase,o1,5\n"
                f"{T0},c2,signup,,\n")
    # One day in: c1's win-back check is pending for T0+10d, c2's follow-up for T0+2d.
    r = run(path("base.db"), v1, T0 + DAY, path("base.out"))
    assert r.returncode == 0, r.stderr
    assert actions(path("base.out")) == [f"{T0},c2,welcome,send_email,hello"], actions(path("base.out"))

    def fresh(name):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path("base.db") + suffix):
                shutil.copy(path("base.db") + suffix, path(name) + suffix)
        return path(name)

    # --- reevaluate: the check at T0+5d (trigger + new delay), the follow-up at T0+3d (check at
    # T0 + new delay), both with the new arguments.
    db = fresh("reevaluate.db")
    v2 = write_rules("v2_reevaluate.json", rules("5d", "3d", "_v2", "reevaluate"))
    r = run(db, v2, T0 + 30 * DAY, path("reevaluate.out"))
    assert r.returncode == 0, r.stderr
    assert (f"{db}: rules changed; workflows moved to them at 2024-01-02T00:00:00Z; changed "
            "rules: winback (reevaluate), welcome (reevaluate)\n") in r.stderr, r.stderr
    assert actions(path("reevaluate.out")) == [
        f"{T0 + 3 * DAY},c2,welcome,send_email,follow_up_v2",
        f"{T0 + 5 * DAY},c1,winback,send_email,winback_v2",
    ], actions(path("reevaluate.out"))

    # --- reevaluate with delays now shorter than the time already passed: due at the change
    # instant (T0+1d), not in the past.
    db = fresh("past.db")
    v3 = write_rules("v3_past.json", rules("12h", "1h", "_v3", "reevaluate"))
    r = run(db, v3, T0 + 30 * DAY, path("past.out"))
    assert r.returncode == 0, r.stderr
    assert actions(path("past.out")) == [
        f"{T0 + DAY},c1,winback,send_email,winback_v3",
        f"{T0 + DAY},c2,welcome,send_email,follow_up_v3",
    ], actions(path("past.out"))

    # --- drop: nothing of the pending timers; a purchase after the change runs the new rule.
    db = fresh("drop.db")
    v4 = write_rules("v4_drop.json", rules("5d", "3d", "_v4", "drop"))
    with open(path("events.csv"), "a") as f:
        f.write(f"{T0 + 2 * DAY},c3,purchase,o3,5\n")
    r = run(db, v4, T0 + 30 * DAY, path("drop.out"))
    assert r.returncode == 0, r.stderr
    assert actions(path("drop.out")) == [
        f"{T0 + 7 * DAY},c3,winback,send_email,winback_v4",
    ], actions(path("drop.out"))

    # --- refused: no on_change; a changed trigger. The database stays as it was.
    db = fresh("refused.db")
    v5 = write_rules("v5_no_on_change.json", rules("5d", "2d", ""))
    r = run(db, v5, T0 + 30 * DAY, path("refused.out"))
    assert r.returncode == 1, r.stderr
    assert r.stderr == (
        f"{v5}: the database {db} runs other rules; they can only change this way:\n"
        f"{v5}: /rules/0/on_change: rule \"winback\" changed in a running engine: say what "
        "happens to the timers it has pending with \"on_change\": \"reevaluate\" (they fire "
        "under the new definition, the delay counted again from their trigger) or \"drop\" "
        "(they are dropped at the change)\n"), r.stderr
    v6 = write_rules("v6_trigger.json", rules("10d", "2d", "", "reevaluate", trigger="cart"))
    r = run(db, v6, T0 + 30 * DAY, path("refused.out"))
    assert r.returncode == 1, r.stderr
    assert r.stderr.endswith(
        f"{v6}: /rules/0: rule \"winback\" changed more than its delay, condition (\"if\") and "
        "actions (\"then\"); its trigger, re-entry, cap and delivery are kept in the contacts' "
        "state and cannot change in a running engine (replay the event log through changed "
        "rules instead)\n"), r.stderr
    # Untouched: the original rules still run, as an uninterrupted run would.
    r = run(db, v1, T0 + 30 * DAY, path("refused.out"))
    assert r.returncode == 0, r.stderr
    assert actions(path("refused.out")) == [
        f"{T0 + 2 * DAY},c2,welcome,send_email,follow_up",
        f"{T0 + 10 * DAY},c1,winback,send_email,winback",
        f"{T0 + 12 * DAY},c3,winback,send_email,winback",
    ], actions(path("refused.out"))
    print("rule changes in a live database: ok")


if __name__ == "__main__":
    main()
