#!/usr/bin/env python3
"""`nudge run` follows `nudge replay`'s event rules and keeps its files whole (docs/live.md):

- a late event (before the time the database reached), for a new contact or for one with later
  events, is refused at file:line with --on-error stop (exit 1, nothing of its batch committed,
  a run after the line is removed works), and set aside in --rejects with --on-error skip;
- a rule cycle hit at run time names the event's line (stop) or rejects that event (skip), as
  does any other event the engine refuses;
- a replaced or rewritten events file is refused, naming --from-start, which reads it from its
  first line; a copy with the same consumed bytes continues;
- a torn last line in --out (a kill in the middle of a write) is cut at the next run: the output
  holds whole lines, every action of an uninterrupted run, each key as one line.

Usage: run_events.py NUDGE RULES WORKDIR
"""
import os
import shutil
import sqlite3
import subprocess
import sys

HEADER = "ts,contact,type,key,value\n"


def main():
    nudge, rules, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    path = lambda name: os.path.join(work, name)

    def run(db, events, out, *extra, rules_file=rules):
        cmd = [nudge, "run", "--db", db, "--rules", rules_file, "--events", events, "--out", out,
               *extra]
        return subprocess.run(cmd, capture_output=True, text=True)

    def meta(db, key):
        with sqlite3.connect(db) as c:
            row = c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def write(name, text):
        with open(path(name), "w") as f:
            f.write(text)
        return path(name)

    def read(name):
        with open(path(name)) as f:
            return f.read()

    # --- A late event for a new contact: stop refuses it, nothing committed; fixed, it runs.
    events = write("late.csv", HEADER + "1704067200,c1,signup,,\n1704067300,c2,purchase,o1,5\n")
    db, out = path("late.db"), path("late.out")
    r = run(db, events, out)
    assert r.returncode == 0, r.stderr
    with open(events, "a") as f:
        f.write("1704067100,c9,purchase,o2,5\n1704067400,c3,signup,,\n")
    offset, before = meta(db, "run.events_offset"), read("late.out")
    r = run(db, events, out)
    assert r.returncode == 1, r.stderr
    assert r.stderr == (f"{events}:4: ts 1704067100 is before 1704067300, the time already "
                        "processed (events must be sorted by ts)\n"), r.stderr
    assert meta(db, "run.events_offset") == offset and read("late.out") == before
    # The operator removes the line (a new file: another inode, the same consumed bytes).
    fixed = HEADER + "1704067200,c1,signup,,\n1704067300,c2,purchase,o1,5\n1704067400,c3,signup,,\n"
    os.replace(write("late.csv.new", fixed), events)  # as an editor saves it
    r = run(db, events, out)
    assert r.returncode == 0, r.stderr
    assert "with the same first" in r.stderr and "continuing after them" in r.stderr, r.stderr
    assert read("late.out").splitlines()[-1].startswith("1704067400,c3,welcome,send_email,"), \
        read("late.out")

    # --- A late event for a contact with later events, with skip: set aside, the run goes on;
    # the rejects file gets it once.
    events = write("skip.csv", HEADER + "1704067200,c1,signup,,\n1704067300,c2,signup,,\n")
    db, out, rejects = path("skip.db"), path("skip.out"), path("skip.rejects")
    assert run(db, events, out).returncode == 0
    with open(events, "a") as f:
        f.write("1704067250,c2,purchase,o3,5\n1704067400,c3,signup,,\n")
    for _ in range(2):
        r = run(db, events, out, "--on-error", "skip", "--rejects", rejects)
        assert r.returncode == 0, r.stderr
    assert read("skip.rejects") == (
        f"{events}:4: ts 1704067250 is before 1704067300, the time already processed (events "
        "must be sorted by ts)\t1704067250,c2,purchase,o3,5\n"), read("skip.rejects")
    assert [l.split(",")[1] for l in read("skip.out").splitlines()] == ["c1", "c2", "c3"]
    # Without a rejects file the refused line goes to stderr; a stop run refuses it again.
    # A fresh database refuses the same line, as replay does (the previous event is later).
    r = run(path("skip2.db"), events, path("skip2.out"), "--on-error", "skip")
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith(f"rejected: {events}:4: ts 1704067250 is before the previous "
                               "event's ts 1704067300 (events must be sorted by ts)\n"), r.stderr
    r = subprocess.run([nudge, "replay", "--rules", rules, "--events", events], capture_output=True,
                       text=True)
    assert r.returncode == 1 and r.stderr.startswith(f"{events}:4: ts 1704067250 is before"), \
        r.stderr
    r = run(db, events, out, "--rejects", rejects)
    assert r.returncode == 2 and r.stderr == "--rejects needs --on-error skip\n", r.stderr

    # --- A rule cycle at run time: stop names the event's line; skip rejects that event only
    # (not c2's earlier signup) and delivers the others.
    cyclic = write("cycle.json", """{"version": 1, "event_types": ["go"], "rules": [
  {"id": "start", "on": {"event": "go"}, "then": [{"do": "set_stage", "arg": "a"}]},
  {"id": "ping", "on": {"stage_entered": "a"}, "then": [{"do": "set_stage", "arg": "b"}]},
  {"id": "pong", "on": {"stage_entered": "b"}, "then": [{"do": "set_stage", "arg": "a"}]},
  {"id": "welcome", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "hi"}]}]}
""")
    events = write("cycle.csv", "ts,contact,type\n1704067200,c1,signup\n1704067250,c2,signup\n"
                   "1704067300,c2,go\n1704067400,c3,signup\n")
    db, out, rejects = path("cycle.db"), path("cycle.out"), path("cycle.rejects")
    r = run(db, events, out, rules_file=cyclic)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"{events}:4: contact \"c2\": internal actions trigger rules past "
                               "the depth limit; rule cycle: start -> ping -> pong"), r.stderr
    assert meta(db, "run.events_offset") is None and read("cycle.out") == ""
    r = run(db, events, out, "--on-error", "skip", "--rejects", rejects, rules_file=cyclic)
    assert r.returncode == 0, r.stderr
    assert read("cycle.rejects").startswith(f"{events}:4: contact \"c2\": internal actions"), \
        read("cycle.rejects")
    assert read("cycle.rejects").endswith("\t1704067300,c2,go\n"), read("cycle.rejects")
    assert [l.split(",")[1] for l in read("cycle.out").splitlines()] == ["c1", "c2", "c3"]
    r = run(db, events, out, rules_file=cyclic)  # nothing left: the run does not stall
    assert r.returncode == 0 and r.stderr.startswith("0 events processed"), r.stderr

    # --- Another event the engine refuses (an identify event naming its own contact): the same.
    events = write("identify.csv", HEADER + "1704067200,c1,signup,,\n"
                   "1704067300,c2,identify,c2,\n1704067400,c3,signup,,\n")
    db, out = path("identify.db"), path("identify.out")
    reason = ("contact \"c2\": an identify event's key names its own contact; the key is the id of "
              "the known contact the event's contact is")
    r = run(db, events, out)
    assert r.returncode == 1 and r.stderr == f"{events}:3: {reason}\n", r.stderr
    r = run(db, events, out, "--on-error", "skip")
    assert r.returncode == 0 and r.stderr.startswith(f"rejected: {events}:3: {reason}\n"), r.stderr
    assert [l.split(",")[1] for l in read("identify.out").splitlines()] == ["c1", "c3"]

    # --- A rotated file: longer, other bytes: refused naming --from-start; with it, read from
    # its first line (its events are after the time the database reached).
    events = write("rot.csv", HEADER + "1704067200,c1,signup,,\n1704067300,c2,signup,,\n")
    db, out = path("rot.db"), path("rot.out")
    assert run(db, events, out).returncode == 0
    os.rename(events, path("rot.csv.1"))
    write("rot.csv", HEADER + "".join(f"{1704067400 + i * 10},n{i},signup,,\n" for i in range(5)))
    r = run(db, events, out)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"{events}: the file was replaced (device:inode "), r.stderr
    assert "run with --from-start to read it from its first line" in r.stderr, r.stderr
    for _ in range(2):  # the second run: the same file, continued (nothing new)
        r = run(db, events, out, "--from-start")
        assert r.returncode == 0, r.stderr
    assert [l.split(",")[1] for l in read("rot.out").splitlines()] == \
        ["c1", "c2", "n0", "n1", "n2", "n3", "n4"], read("rot.out")
    # Rewritten in place (the same inode), as long: refused as rewritten.
    with open(events, "r+") as f:
        f.seek(len(HEADER))
        f.write("1704067401")
    r = run(db, events, out)
    assert r.returncode == 1 and r.stderr.startswith(f"{events}: the file was rewritten"), r.stderr

    # --- A torn last line in --out: cut, and the rerun writes every action once.
    lines = [HEADER] + [f"{1704067200 + i * 60},c{i % 40},"
                        f"{('signup', 'cart', 'purchase')[i % 3]},o{i},5\n" for i in range(600)]
    whole = write("torn.csv", "".join(lines))
    ref_db, ref_out = path("ref.db"), path("ref.out")
    assert run(ref_db, whole, ref_out, "--until", "2024-03-01T00:00:00Z").returncode == 0
    events = write("torn_half.csv", "".join(lines[:300]))
    db, out = path("torn.db"), path("torn.out")
    assert run(db, events, out, "--batch", "50").returncode == 0
    reference = read("ref.out").splitlines(keepends=True)
    with open(out, "a") as f:
        f.write(reference[-1][:17])  # a kill in the middle of the next batch's write
    write("torn_half.csv", "".join(lines))  # the rest appended (rewritten with the same prefix)
    r = run(db, events, out, "--batch", "50", "--until", "2024-03-01T00:00:00Z")
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith(f"{out}: cut a torn last line (17 bytes without a line break"), \
        r.stderr
    got = read("torn.out")
    assert got.endswith("\n") and got == read("ref.out"), "the output differs from the reference"
    print(f"run_events: late, cycle, rotation and torn-output checks passed "
          f"({len(reference)} actions in the torn-output check)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
