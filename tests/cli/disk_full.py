#!/usr/bin/env python3
"""`nudge run` on a full disk: the batch that does not fit is refused with SQLite's "database or
disk is full" naming the database, exit code 1, nothing of it committed; run again with room and
the delivered actions equal an uninterrupted run's.

The full disk is `nudge run --max-pages N` (SQLite's PRAGMA max_page_count), which makes SQLite
fail with SQLITE_FULL exactly where a full file system would.

A full disk under --out: /dev/full (every write fails with ENOSPC), and, where user namespaces
allow mounting one (`unshare -rm`), a small tmpfs that fills in the middle of a batch. The error
names the database, the file and "No space left on device"; the output keeps whole lines; a rerun
with room delivers every action exactly once (the output equals an uninterrupted run's). A
snapshot written to a full tmpfs names its path and the reason, and leaves no temporary file.

Usage: disk_full.py NUDGE RULES WORKDIR
"""
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys

from support import fresh_workdir, run_command, write_events


def main():
    nudge, rules, work = sys.argv[1:4]
    fresh_workdir(work)
    events = os.path.join(work, "events.csv")
    write_events(events, count=6000, contacts=1500, step=60, digits=5)

    def run(db, out, *extra):
        return subprocess.run(run_command(nudge, rules, events, db, out, 500, *extra),
                              capture_output=True, text=True)

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
    # Still full: a rerun fails the same way, with an empty outbox again. It may commit a few
    # batches more: the outbox is trimmed in groups of batches (docs/live.md), and the failed
    # run's last trim freed the pages its untrimmed actions held.
    r = run(db, out, "--max-pages", str(cap))
    assert r.returncode == 1 and "database or disk is full" in r.stderr, r.stderr
    again, outbox = progress()
    assert done <= again < 6000 and outbox == 0, (done, again, outbox)

    # Room again: the rerun continues from the last committed batch.
    r = run(db, out)
    assert r.returncode == 0, r.stderr
    with open(ref_out) as a, open(out) as b:
        expected, got = a.read(), b.read()
    assert expected.count("\n") > 1000, "the reference run delivers actions"
    assert got == expected, "the delivered actions differ from an uninterrupted run"
    print(f"disk_full: refused after {done} of 6000 lines at {cap} pages; the rerun with room "
          f"matches the uninterrupted run ({expected.count(chr(10))} actions)")

    def out_refused(stderr, db, out):
        lines = stderr.splitlines()
        assert len(lines) == 2, lines
        assert lines[0].startswith(f"{db}: "), lines
        assert lines[0].endswith(f" actions are committed but could not be written to {out}; "
                                 "they stay in the outbox, and the next nudge run writes them "
                                 f"(with the same idempotency keys) once {out} can be written"), \
            lines
        assert lines[1].startswith(f"  caused by: {out}: cannot append "), lines
        assert lines[1].endswith(" bytes: No space left on device"), lines

    # --out on /dev/full: refused with the file and the reason; a rerun with room delivers all.
    db, out = os.path.join(work, "devfull.db"), os.path.join(work, "devfull.csv")
    r = run(db, "/dev/full")
    assert r.returncode == 1, r.stderr
    out_refused(r.stderr, db, "/dev/full")
    r = run(db, out)
    assert r.returncode == 0, r.stderr
    with open(out) as b:
        assert b.read() == expected, "/dev/full: the rerun differs from an uninterrupted run"

    # A tmpfs that fills in the middle of a batch, then grows (remount): whole lines only, and
    # every action exactly once. Needs a mount namespace (unshare -rm); skipped without one.
    mnt = os.path.join(work, "tmpfs")
    os.makedirs(mnt)
    db, out, snap = os.path.join(work, "tmpfs.db"), os.path.join(mnt, "out.csv"), \
        os.path.join(mnt, "s.snap")
    q = shlex.quote
    cmd = " ".join(q(a) for a in [nudge, "run", "--db", db, "--rules", rules, "--events", events,
                                  "--out", out, "--batch", "500"])
    replay = " ".join(q(a) for a in [nudge, "replay", "--rules", rules, "--events", events,
                                     "--save-snapshot", snap])
    w = lambda name: q(os.path.join(work, name))
    script = f"""
mount -t tmpfs -o size=64k tmpfs {q(mnt)} || exit 0
touch {w("mounted")}
{cmd} 2> {w("err1")}; echo $? > {w("rc1")}
cp {q(out)} {w("partial.csv")}
mount -o remount,size=4m {q(mnt)}
{cmd} 2> {w("err2")}; echo $? > {w("rc2")}
cp {q(out)} {w("tmpfs.csv")}
umount {q(mnt)}; mount -t tmpfs -o size=8k tmpfs {q(mnt)}
{replay} > /dev/null 2> {w("err3")}; echo $? > {w("rc3")}
ls -A {q(mnt)} > {w("left")}
"""
    subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True)
    if not os.path.exists(os.path.join(work, "mounted")):
        print("disk_full: no mount namespace (unshare -rm): the tmpfs checks are skipped")
    else:
        text = lambda name: open(os.path.join(work, name)).read()
        assert text("rc1").strip() == "1", text("err1")
        out_refused(text("err1"), db, out)
        partial = text("partial.csv")
        assert 0 < len(partial) < len(expected) and partial.endswith("\n"), len(partial)
        assert expected.startswith(partial), "the full disk left a torn or foreign line"
        assert text("rc2").strip() == "0", text("err2")
        assert text("tmpfs.csv") == expected, "tmpfs: the rerun differs from an uninterrupted run"
        assert text("rc3").strip() == "1", text("err3")
        assert text("err3") == (f"{snap}: cannot write the snapshot (write {snap}.tmp): No space "
                                "left on device\n"), text("err3")
        assert text("left") == "", text("left")
        print(f"disk_full: --out on a full tmpfs refused after {len(partial)} bytes of whole "
              f"lines; the rerun with room matches the uninterrupted run")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
