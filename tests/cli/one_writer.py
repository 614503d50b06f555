#!/usr/bin/env python3
"""One writer per database: a second `nudge run` on a database another `nudge run` holds is
refused at once (exit 1) naming the holder's pid, host and start time; `nudge outbox` still
reads it; once the first run ends, the second runs, and the two runs' output equals one
uninterrupted run's.

The first run is held in the middle, with the database open for writing, by giving it a FIFO as
--out: opening a FIFO for writing blocks until a reader opens it (no timing involved).

Usage: one_writer.py NUDGE RULES WORKDIR
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time

from support import T0, fresh_workdir, run_command, write_events


def main():
    nudge, rules, work = sys.argv[1:4]
    fresh_workdir(work)
    events = os.path.join(work, "events.csv")
    write_events(events, count=2000, contacts=300, step=600, digits=4)

    def run(db, out, *extra):
        return run_command(nudge, rules, events, db, out, 100, *extra)

    ref_db, ref_out = os.path.join(work, "ref.db"), os.path.join(work, "ref.csv")
    r = subprocess.run(run(ref_db, ref_out), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    db = os.path.join(work, "state.db")
    first_out, second_out = os.path.join(work, "first.csv"), os.path.join(work, "second.csv")
    # A first part, so that the database holds its rules and an outbox reader has something.
    r = subprocess.run(run(db, first_out, "--until", str(T0 + 500 * 600)), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr

    fifo = os.path.join(work, "out.fifo")
    os.mkfifo(fifo)
    holder = subprocess.Popen(run(db, fifo), stderr=subprocess.PIPE, text=True)
    lock = db + ".lock"
    deadline = time.monotonic() + 60
    while True:  # until the holder has taken the lock and named itself
        with open(lock) as f:
            text = f.read()
        if text.startswith(f"pid {holder.pid} "):
            break
        assert holder.poll() is None, f"the first run ended early: {holder.stderr.read()}"
        assert time.monotonic() < deadline, f"the first run never took the lock: {text!r}"
        time.sleep(0.05)
    assert re.fullmatch(rf"pid {holder.pid} on host {re.escape(socket.gethostname())} since "
                        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n", text), text

    second = subprocess.run(run(db, second_out), capture_output=True, text=True, timeout=60)
    assert second.returncode == 1, f"exit {second.returncode}: {second.stderr}"
    expected = (f"{db}: refused: another writer has this database open ({text.strip()}; lock "
                f"file {lock}); one writer at a time: wait until it ends, or stop it (readers "
                f"such as nudge outbox still work)\n")
    assert second.stderr == expected, second.stderr
    assert not os.path.exists(second_out) or os.path.getsize(second_out) == 0

    outbox = subprocess.run([nudge, "outbox", "--db", db], capture_output=True, text=True)
    assert outbox.returncode == 0, outbox.stderr
    assert outbox.stdout.startswith("ts,contact,rule,action,arg,idempotency_key\n"), outbox.stdout

    # Let the holder go on: it writes its actions through the FIFO and ends.
    with open(fifo) as f:
        through_fifo = f.read()
    assert holder.wait(timeout=120) == 0, holder.stderr.read()
    holder.stderr.close()
    with open(first_out, "a") as f:
        f.write(through_fifo)

    # Now the second run may write: nothing is left, and it says so.
    second = subprocess.run(run(db, second_out), capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "0 events processed" in second.stderr, second.stderr

    with open(ref_out) as a, open(first_out) as b:
        want, got = a.read(), b.read()
    assert want.count("\n") > 100, "the reference run delivers actions"
    assert got == want, "the runs' actions differ from an uninterrupted run"
    print(f"one_writer: the second run was refused naming {text.strip()}; the runs' "
          f"{want.count(chr(10))} actions equal an uninterrupted run's")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
