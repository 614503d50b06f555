#!/usr/bin/env python3
"""`nudge run` on a full disk: the batch that does not fit is refused with SQLite's "database or
disk is full" naming the database, exit code 1, nothing of it committed; run again with room and
the delivered actions equal an uninterrupted run's.

The full disk is `nudge run --max-pages N` (SQLite's PRAGMA max_page_count), which makes SQLite
fail with SQLITE_FULL exactly where a full file system would.

Usage: disk_full.py NUDGE RULES WORKDIR
"""
import os
import shutil
import sqlite3
import subprocess
import sys


def main():
    nudge, rules, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    events = os.path.join(work, "events.csv")
    t0 = 1704067200
    with open(events, "w") as f:
        f.write("ts,contact,type,key,value\n")
        for i in range(6000):
            contact = f"contact_{i % 1500:05d}"
            kind = ("signup", "cart", "page_view", "purchase")[(i // 1500) % 4]
            key = "/pricing" if kind == "page_view" else (f"o{i}" if kind == "purchase" else "")
            value = "19.5" if kind == "purchase" else ""
            f.write(f"{t0 + i * 60},{contact},{kind},{key},{value}\n")

    def run(db, out, *extra):
        cmd = [nudge, "run", "--db", db, "--rules", rules, "--events", events, "--out", out,
               "--batch", "500", *extra]
        return subprocess.run(cmd, capture_output=True, text=True)

    ref_db, ref_out = os.path.join(work, "ref.db"), os.path.join(work, "ref.csv")
    r = run(ref_db, ref_out)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(ref_db) as c:
        pages = c.execute("PRAGMA page_count").fetchone()[0]
    cap = pages // 2

    db, out = os.path.join(work, "full.db"), os.path.join(work, "full.csv")
    r = run(db, out, "--max-pages", str(cap))
    print(r.stderr, end="")
    assert r.returncode == 1, f"exit {r.returncode}, expected 1"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith((f"store.save failed: {db}: cannot ", f"{db}: cannot ")), lines
    assert lines[0].endswith(": database or disk is full"), lines

    def progress():
        with sqlite3.connect(db) as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'run.events_lines'").fetchone()
            outbox = c.execute("SELECT count(*) FROM outbox").fetchone()[0]
        return (int(row[0]) if row else 0), outbox

    done, outbox = progress()
    assert 0 < done < 6000, f"{done} lines committed before the disk filled"
    assert outbox == 0, "the committed batches were delivered"
    # Still full: a rerun fails the same way and commits nothing more.
    r = run(db, out, "--max-pages", str(cap))
    assert r.returncode == 1 and "database or disk is full" in r.stderr, r.stderr
    assert progress() == (done, 0)

    # Room again: the rerun continues from the last committed batch.
    r = run(db, out)
    assert r.returncode == 0, r.stderr
    with open(ref_out) as a, open(out) as b:
        expected, got = a.read(), b.read()
    assert expected.count("\n") > 1000, "the reference run delivers actions"
    assert got == expected, "the delivered actions differ from an uninterrupted run"
    print(f"disk_full: refused after {done} of 6000 lines at {cap} pages; the rerun with room "
          f"matches the uninterrupted run ({expected.count(chr(10))} actions)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
