#!/usr/bin/env python3
"""`nudge run` trims the outbox in groups of batches, each after one fsync of --out (docs/live.md):

- a run of many small batches (--batch 1: 1,500 batches, 15 groups and a last partial one) ends
  with an empty outbox and writes each action once: its --out equals a --batch 1000 run's;
- a run stopped by a bad line in the middle of a group (--on-error stop) still trims what --out
  holds before it exits: the outbox is empty, and the run after the fix writes each action once;
- with --on-error skip, each refused line is in --rejects once, whatever the batch size.

Usage: out_groups.py NUDGE RULES WORKDIR
"""
import os
import shutil
import subprocess
import sys

HEADER = "ts,contact,type,key,value\n"
T0 = 1704067200


def main():
    nudge, rules, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    path = lambda name: os.path.join(work, name)

    def run(db, events, out, *extra):
        cmd = [nudge, "run", "--db", path(db), "--rules", rules, "--events", events, "--out",
               path(out), *extra]
        return subprocess.run(cmd, capture_output=True, text=True)

    def outbox(db):
        r = subprocess.run([nudge, "outbox", "--db", path(db)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()[1:]

    def read(name):
        with open(path(name)) as f:
            return f.read()

    def write(name, lines):
        with open(path(name), "w") as f:
            f.write(HEADER + "".join(lines))
        return path(name)

    # One signup per second, each its own contact: every batch of --batch 1 delivers an action.
    good = [f"{T0 + i},c{i:05d},signup,,\n" for i in range(1500)]
    events = write("events.csv", good)

    r = run("ref.db", events, "ref.out", "--batch", "1000")
    assert r.returncode == 0, r.stderr
    reference = read("ref.out")
    assert reference.count("\n") == 1500, reference.count("\n")

    r = run("small.db", events, "small.out", "--batch", "1")
    assert r.returncode == 0, r.stderr
    assert r.stderr.endswith(", 1500 actions delivered, 0 in the outbox\n"), r.stderr
    assert outbox("small.db") == [], "the last group was not trimmed"
    assert read("small.out") == reference, "--batch 1 wrote other lines than --batch 1000"

    # A bad line at 1,250 (inside the 13th group of 100 batches): the run stops there with the
    # groups' actions in --out and none left in the outbox.
    bad = good[:1249] + ["not-a-time,c99999,signup,,\n"] + good[1249:]
    events = write("bad.csv", bad)
    r = run("stop.db", events, "stop.out", "--batch", "1")
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"{events}:1251: "), r.stderr
    assert outbox("stop.db") == [], "the error path left the written actions in the outbox"
    assert reference.startswith(read("stop.out")) and read("stop.out").count("\n") == 1249, \
        read("stop.out").count("\n")
    fixed = write("bad.csv.new", good)
    os.replace(fixed, events)
    r = run("stop.db", events, "stop.out", "--batch", "1")
    assert r.returncode == 0, r.stderr
    assert read("stop.out") == reference, "the run after the fix wrote an action twice"

    # Skip: every refused line once in --rejects, at --batch 1 and 1000 alike.
    bad = list(good)
    for i in (10, 500, 1499):
        bad[i] = f"bad{i},c{i:05d},signup,,\n"
    events = write("skip.csv", bad)
    for batch in ("1", "1000"):
        r = run(f"skip{batch}.db", events, f"skip{batch}.out", "--batch", batch, "--on-error",
                "skip", "--rejects", path(f"skip{batch}.rejects"))
        assert r.returncode == 0, r.stderr
        rejected = [line.split(":")[1] for line in read(f"skip{batch}.rejects").splitlines()]
        assert rejected == ["12", "502", "1501"], rejected
        assert outbox(f"skip{batch}.db") == []
        assert read(f"skip{batch}.out").count("\n") == 1497
    print("out_groups: 1,500 batches of 1 end with an empty outbox and each action once; the "
          "error path trims; each rejected line once")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
