#!/usr/bin/env python3
"""Damage in the live database is refused, never used.

1. `nudge db check` on a sound database exits 0 and says so; with a flipped bit in a journal row,
   an outbox row or a meta row (and with a changed contact id in a journal record) it exits 1
   naming the record, and `nudge run` on it refuses to start, naming the same record.
2. Random flips: a database holding journal rows, meta rows and undelivered outbox rows gets one
   random bit flipped (a fresh copy each time; half of the flips at any byte, half at a non-zero
   byte, where the data is), and the rest of the events is run on it. Each run must either be
   refused (exit 1 with a message) or deliver exactly the actions of the same run on the clean
   copy: never different actions. The counts are printed.

Usage: db_flips.py NUDGE RULES WORKDIR [--flips N] [--seed S]
"""
import argparse
import os
import random
import re
import shutil
import sqlite3
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("nudge")
    ap.add_argument("rules")
    ap.add_argument("work")
    ap.add_argument("--flips", type=int, default=100)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    nudge, rules, work = args.nudge, args.rules, args.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    t0 = 1704067200
    events = os.path.join(work, "events.csv")
    with open(events, "w") as f:
        f.write("ts,contact,type,key,value\n")
        for i in range(900):
            contact = f"c{(i * 7) % 120:03d}"
            kind = ("signup", "cart", "page_view", "purchase", "cart")[(i // 60) % 5]
            key = "/pricing" if kind == "page_view" else (f"o{i}" if kind == "purchase" else "")
            value = "19.5" if kind == "purchase" else ""
            f.write(f"{t0 + i * 900},{contact},{kind},{key},{value}\n")

    def run(db, out, until=None, check=True):
        cmd = [nudge, "run", "--db", db, "--rules", rules, "--events", events, "--out", out,
               "--batch", "50"]
        if until is not None:
            cmd += ["--until", str(until)]
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=60)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    # The base: two thirds of the events delivered; then one more batch whose delivery fails
    # (/dev/full), so its actions wait in the outbox.
    base = os.path.join(work, "base.db")
    run(base, os.path.join(work, "base.csv"), until=t0 + 600 * 900)
    r = run(base, "/dev/full", until=t0 + 640 * 900, check=False)
    assert r.returncode == 1 and "/dev/full" in r.stderr, r.stderr
    with sqlite3.connect(f"file:{base}?mode=ro", uri=True) as c:
        outbox_rows = c.execute("SELECT count(*) FROM outbox").fetchone()[0]
        journal_rows = c.execute("SELECT count(*) FROM journal").fetchone()[0]
    assert outbox_rows > 0 and journal_rows > 5, (outbox_rows, journal_rows)
    assert not os.path.exists(base + "-wal") or os.path.getsize(base + "-wal") == 0

    # The rest, on a clean copy: the reference.
    def rest(db_bytes, name):
        db = os.path.join(work, name + ".db")
        for suffix in ("", "-wal", "-shm", ".lock"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        with open(db, "wb") as f:
            f.write(db_bytes)
        out = os.path.join(work, name + ".csv")
        if os.path.exists(out):
            os.remove(out)
        r = run(db, out, check=False)
        got = open(out, "rb").read() if os.path.exists(out) else b""
        return db, r, got

    clean = open(base, "rb").read()
    _, r, want = rest(clean, "clean")
    assert r.returncode == 0, r.stderr
    assert want.count(b"\n") > 100, "the rest of the run delivers actions"

    def check(db):
        return subprocess.run([nudge, "db", "check", db], capture_output=True, text=True,
                              errors="replace", timeout=60)

    # 1. A sound database, then one damaged record of each kind.
    r = check(base)
    assert r.returncode == 0 and r.stdout.endswith(f"{base}: ok, no damage found\n"), r.stdout
    with sqlite3.connect(f"file:{base}?mode=ro", uri=True) as c:
        first_outbox = c.execute("SELECT min(first_seq) FROM outbox").fetchone()[0]
    cases = [
        ("journal", "SELECT states FROM journal WHERE batch = 3",
         "UPDATE journal SET states = ? WHERE batch = 3", lambda b: flip(b, 30),
         "journal row 3 fails its checksum"),
        ("contact id", "SELECT states FROM journal WHERE batch = 2",
         "UPDATE journal SET states = ? WHERE batch = 2", other_contact,
         "journal row 2 fails its checksum"),
        ("outbox", f"SELECT actions FROM outbox WHERE first_seq = {first_outbox}",
         f"UPDATE outbox SET actions = ? WHERE first_seq = {first_outbox}",
         lambda b: flip(b, 20), f"outbox row {first_outbox} fails its checksum"),
        ("meta", "SELECT value FROM meta WHERE key = 'run.events_offset'",
         "UPDATE meta SET value = ? WHERE key = 'run.events_offset'", lambda b: flip(b, 0),
         'meta "run.events_offset" fails its checksum'),
    ]
    for name, select, update, change, message in cases:
        db = os.path.join(work, f"case_{name.replace(' ', '_')}.db")
        shutil.copyfile(base, db)
        with sqlite3.connect(db) as c:
            blob = bytes(c.execute(select).fetchone()[0])
            changed = change(blob)
            assert changed != blob, name
            c.execute(update, (changed,))
        r = check(db)
        assert r.returncode == 1, f"{name}: db check exit {r.returncode}: {r.stdout}"
        assert f"  damaged: {message}" in r.stdout, f"{name}: {r.stdout}"
        r = run(db, os.path.join(work, "case.csv"), check=False)
        assert r.returncode == 1, f"{name}: run exit {r.returncode}"
        assert r.stderr.startswith(f"{db}: {message}"), r.stderr
        assert ": the database is damaged and was not used" in r.stderr, r.stderr

    # 2. Random flips, each on a fresh copy.
    rng = random.Random(args.seed)
    nonzero = [i for i, b in enumerate(clean) if b != 0]
    refused = harmless = 0
    changed = []
    reasons = {}
    for n in range(args.flips):
        at = rng.randrange(len(clean)) if n % 2 == 0 else rng.choice(nonzero)
        bit = rng.randrange(8)
        damaged = bytearray(clean)
        damaged[at] ^= 1 << bit
        db, r, got = rest(bytes(damaged), "flip")
        if r.returncode != 0:
            assert r.returncode == 1 and r.stderr.strip(), (at, bit, r.returncode, r.stderr)
            refused += 1
            reason = r.stderr.split(": ", 2)[1] if r.stderr.count(": ") >= 2 else r.stderr
            reasons[reason] = reasons.get(reason, 0) + 1
        elif got == want:
            harmless += 1
        else:
            changed.append((at, bit))
    print(f"db_flips: {args.flips} flips in a {len(clean)}-byte database: {refused} refused, "
          f"{harmless} harmless, {len(changed)} changed the actions")
    if os.environ.get("DB_FLIPS_VERBOSE"):
        for reason, n in sorted(reasons.items(), key=lambda x: -x[1]):
            print(f"  {n:5d} {reason}")
    assert not changed, f"flips (byte, bit) that changed the actions: {changed}"
    shutil.rmtree(work, ignore_errors=True)


def other_contact(blob):
    """The first contact id in a state record, one digit changed (c014 -> c015)."""
    m = re.search(rb"c\d\d\d", blob)
    assert m, "a contact id in the record"
    b = bytearray(blob)
    b[m.end() - 1] = ord("0") + (b[m.end() - 1] - ord("0") + 1) % 10
    return bytes(b)


def flip(blob, at):
    b = bytearray(blob)
    b[at] ^= 0x04
    return bytes(b)


if __name__ == "__main__":
    main()
