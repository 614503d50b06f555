#!/usr/bin/env python3
"""deliver_basics.py NUDGE CLI_TEST_DIR WORK_DIR: nudge deliver, nudge run --follow and --until
now, case by case (docs/live.md, "Follow mode" and "Delivery"; issue 20).

- a webhook answering 302 or 500: nothing is marked delivered; only a 2xx marks, once per key;
- a webhook that always fails: each action is tried --max-attempts times under its key, then
  parked (nudge outbox --dead), and the outbox is empty;
- --exec: the action's JSON on standard input, NUDGE_IDEMPOTENCY_KEY set; exit 0 delivers, any
  other status is a failure;
- --until now in replay, run and explain: the wall clock (or NUDGE_CLOCK_FILE) at the start;
- nudge run --follow: a half-written line waits, SIGTERM ends it between batches with exit 0,
  a truncated events file stops it with a message, bad option combinations are usage errors;
- a second deliverer on one database is refused.
Standard library only.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print(f"FAIL: {msg}")


def wait_for(cond, what, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    check(False, f"timed out waiting for {what}")
    return False


def main():
    nudge, tests, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    rules, contacts, events = tests / "ok_rules.json", tests / "contacts.csv", tests / "events.csv"

    def nudge_run(*args, env=None):
        return subprocess.run([nudge, *args], capture_output=True, text=True, env=env)

    def fresh_db(name):
        db = work / f"{name}.db"
        r = nudge_run("run", "--db", str(db), "--rules", str(rules), "--contacts", str(contacts),
                      "--events", str(events), "--outbox-only")
        check(r.returncode == 0, f"{name}: nudge run --outbox-only: {r.stderr}")
        return db

    def outbox_keys(db):
        lines = nudge_run("outbox", "--db", str(db)).stdout.splitlines()[1:]
        return [line.rsplit(",", 1)[1] for line in lines]

    def server(name, fail, status, seed=1):
        port_file, log = work / f"{name}.port", work / f"{name}.jsonl"
        p = subprocess.Popen([sys.executable, str(HERE / "flaky_server.py"), "--port-file",
                              str(port_file), "--log", str(log), "--fail", str(fail),
                              "--status", str(status), "--seed", str(seed)])
        wait_for(port_file.exists, "the server")
        return p, f"http://127.0.0.1:{port_file.read_text()}/hook", log

    def requests(log):
        return [json.loads(line) for line in log.read_text().splitlines()]

    # Six actions wait in the outbox of each database.
    db = fresh_db("redirect")
    keys = outbox_keys(db)
    check(len(keys) == 6, f"6 actions in the outbox, got {keys}")

    # A 302 is not a 2xx: never marked delivered; parked after the one attempt.
    p, url, log = server("redirect", 1.0, 302)
    r = nudge_run("deliver", "--db", str(db), "--webhook", url, "--max-attempts", "1")
    p.kill()
    check(r.returncode == 0, f"deliver (302): {r.stderr}")
    check("0 actions delivered, 6 failed attempts, 6 parked as dead letters, 0 waiting" in r.stderr,
          f"deliver (302) summary: {r.stderr}")
    dead = nudge_run("outbox", "--dead", "--db", str(db)).stdout.splitlines()
    check(dead[0] == "sequence,attempts,error,action" and len(dead) == 7 and
          all(",1,HTTP 302," in d for d in dead[1:]), f"dead letters (302): {dead}")

    # 500 half of the time: each key is retried until its one 2xx, and marked only then.
    db = fresh_db("flaky")
    keys = outbox_keys(db)
    p, url, log = server("flaky", 0.5, 500, seed=7)
    r = nudge_run("deliver", "--db", str(db), "--webhook", url, "--max-attempts", "50",
                  "--backoff", "1ms")
    p.kill()
    check("6 actions delivered" in r.stderr and "0 parked" in r.stderr, f"flaky: {r.stderr}")
    reqs = requests(log)
    check(any(q["status"] == 500 for q in reqs), "the flaky server failed some requests")
    by_key = {}
    for q in reqs:
        by_key.setdefault(q["key"], []).append(q["status"])
    check(sorted(by_key) == sorted(keys), f"keys posted {sorted(by_key)}, outbox had {keys}")
    for k, statuses in by_key.items():
        check(statuses[-1] == 200 and statuses.count(200) == 1,
              f"key {k}: statuses {statuses} (one 2xx, last)")
    check(outbox_keys(db) == [], "the outbox lists nothing once delivered")
    # In outbox order, one at a time: the keys' first posts follow the outbox.
    firsts = list(dict.fromkeys(q["key"] for q in reqs))
    check(firsts == keys, f"posted in the order {firsts}, the outbox's {keys}")
    body = json.loads(reqs[0]["body"])
    check(body == {"contact": "c1", "rule": "welcome", "step": None, "action": "send_email",
                   "arg": "welcome_1", "params": {}, "ts": "2024-01-01T00:00:00Z",
                   "idempotency_key": keys[0]}, f"the first action's JSON: {body}")
    # Running nudge run again trims the marked entries from the outbox table.
    nudge_run("run", "--db", str(db), "--rules", str(rules), "--events", str(events),
              "--outbox-only")
    r = nudge_run("db", "check", str(db))
    check(r.returncode == 0 and "outbox: 0 rows checked" in r.stdout, f"db check: {r.stdout}")

    # Always failing: --max-attempts 4 tries, then dead letters.
    db = fresh_db("down")
    keys = outbox_keys(db)
    p, url, log = server("down", 1.0, 503)
    r = nudge_run("deliver", "--db", str(db), "--webhook", url, "--max-attempts", "4",
                  "--backoff", "1ms")
    p.kill()
    check("0 actions delivered, 24 failed attempts, 6 parked as dead letters" in r.stderr,
          f"down: {r.stderr}")
    reqs = requests(log)
    check([q["key"] for q in reqs] == [k for k in keys for _ in range(4)],
          "each key 4 times, in order")
    dead = nudge_run("outbox", "--dead", "--db", str(db)).stdout.splitlines()[1:]
    check(len(dead) == 6 and all(d.split(",")[1:3] == ["4", "HTTP 503"] for d in dead),
          f"dead letters: {dead}")
    check(outbox_keys(db) == [], "parked actions leave the outbox listing")
    r = nudge_run("db", "check", str(db))
    check(r.returncode == 0 and "  delivery: 1 row checked, 6 dead letters" in r.stdout,
          f"db check with dead letters: {r.stdout}")
    # Nothing listens on a closed port: a transport error, parked the same way.
    db = fresh_db("closed")
    r = nudge_run("deliver", "--db", str(db), "--webhook", "http://127.0.0.1:9/hook",
                  "--max-attempts", "2", "--backoff", "1ms")
    dead = nudge_run("outbox", "--dead", "--db", str(db)).stdout.splitlines()[1:]
    check(len(dead) == 6 and all(",2,Couldn't connect to server," in d for d in dead),
          f"closed port: {dead[:1]} {r.stderr}")

    # --exec: JSON on standard input, the key in the environment; exit 0 delivers.
    db = fresh_db("exec")
    keys = outbox_keys(db)
    got = work / "exec.out"
    r = nudge_run("deliver", "--db", str(db), "--exec",
                  f'cat >> {got}; echo " $NUDGE_IDEMPOTENCY_KEY" >> {got}')
    check("6 actions delivered, 0 failed attempts" in r.stderr, f"exec: {r.stderr}")
    lines = got.read_text().splitlines()
    check(len(lines) == 6, f"exec got {lines}")
    for line, key in zip(lines, keys):
        doc, env_key = line.rsplit(" ", 1)
        check(json.loads(doc)["idempotency_key"] == key and env_key == key,
              f"exec line {line} for key {key}")
    db = fresh_db("exec_fail")
    r = nudge_run("deliver", "--db", str(db), "--exec", "cat > /dev/null; exit 3",
                  "--max-attempts", "2", "--backoff", "1ms")
    dead = nudge_run("outbox", "--dead", "--db", str(db)).stdout.splitlines()[1:]
    check(len(dead) == 6 and all(",2,the command exited with status 3," in d for d in dead),
          f"exec failing: {dead[:1]}")

    # A workflow's actions: nudge outbox names workflow/step (it used to crash on them), the
    # JSON names the workflow and the step.
    examples = HERE.parent.parent / "examples" / "rules"
    db = work / "wf.db"
    r = nudge_run("run", "--db", str(db), "--rules", str(examples / "wf_welcome_series.rules.json"),
                  "--events", str(examples / "wf_welcome_series.events.csv"), "--outbox-only",
                  "--until", "2030-01-01T00:00:00Z")
    r = nudge_run("outbox", "--db", str(db))
    check(r.returncode == 0 and r.stdout.splitlines()[1].startswith(
        "1704067200,c1,welcome/s1,send_email,welcome_1,"), f"outbox of a workflow: {r}")
    r = nudge_run("deliver", "--db", str(db), "--exec", f"head -c 80 >> {work / 'wf.out'}; echo >> "
                  f"{work / 'wf.out'}")
    check((work / "wf.out").read_text().startswith(
        '{"contact":"c1","rule":"welcome","step":"s1","action":"send_email"'),
        f"a workflow's JSON: {(work / 'wf.out').read_text()[:100]}")

    # Changed rules wait until nudge deliver emptied the outbox (its entries name the stored
    # rules' steps).
    db = fresh_db("rules_change")
    changed = work / "changed_rules.json"
    changed.write_text(rules.read_text().replace('"arg": "p1"', '"arg": "p1b"'))
    r = nudge_run("run", "--db", str(db), "--rules", str(changed), "--events", str(events),
                  "--outbox-only")
    check(r.returncode == 1 and "but 6 actions of the stored rules wait in the outbox for nudge "
          "deliver" in r.stderr, f"rules changed under a full outbox: {r.stderr}")

    # One deliverer per database.
    db = fresh_db("two")
    first = subprocess.Popen([nudge, "deliver", "--db", str(db), "--exec", "sleep 0.2",
                              "--follow"], stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    r = nudge_run("deliver", "--db", str(db), "--exec", "true")
    check(r.returncode == 1 and "refused: another deliverer has this database open" in r.stderr,
          f"second deliverer: {r.returncode} {r.stderr}")
    first.send_signal(signal.SIGTERM)
    err = first.communicate(timeout=30)[1]
    check(first.returncode == 0 and "(stopped)" in err, f"deliver after SIGTERM: {err}")

    # --until now: the wall clock at the start (here NUDGE_CLOCK_FILE's time).
    clock = work / "clock"
    clock.write_text("2024-01-01T02:30:00Z\n")
    env = dict(os.environ, NUDGE_CLOCK_FILE=str(clock))
    r = nudge_run("replay", "--rules", str(rules), "--contacts", str(contacts), "--events",
                  str(events), "--until", "now", env=env)
    check("(until 2024-01-01T02:30:00Z)" in r.stderr, f"replay --until now: {r.stderr}")
    r = nudge_run("explain", "--contact", "c1", "--rules", str(rules), "--contacts",
                  str(contacts), "--events", str(events), "--until", "now", env=env)
    check(r.returncode == 0, f"explain --until now: {r.stderr}")
    db = work / "until.db"
    r = nudge_run("run", "--db", str(db), "--rules", str(rules), "--contacts", str(contacts),
                  "--events", str(events), "--until", "now", "--out", str(work / "u.csv"),
                  env=env)
    check(r.returncode == 0, f"run --until now: {r.stderr}")
    import sqlite3
    con = sqlite3.connect(str(db))
    now = con.execute("SELECT value FROM meta WHERE key = 'run.now'").fetchone()[0]
    con.close()
    check(now == b"1704076200" or now == "1704076200", f"run.now after --until now: {now}")
    year = time.gmtime().tm_year
    r = nudge_run("replay", "--rules", str(rules), "--contacts", str(contacts), "--events",
                  str(events), "--until", "now")
    check(f"(until {year}-" in r.stderr, f"replay --until now on the wall clock: {r.stderr}")

    # Usage errors.
    r = nudge_run("run", "--db", str(work / "u2.db"), "--rules", str(rules), "--events",
                  str(events), "--follow", "--until", "now")
    check(r.returncode == 2 and "--until cannot be combined with --follow" in r.stderr,
          f"--follow --until: {r.stderr}")
    r = nudge_run("run", "--db", str(work / "u2.db"), "--rules", str(rules), "--events",
                  str(events), "--tick", "1s")
    check(r.returncode == 2 and "--tick and --lag need --follow" in r.stderr, f"--tick: {r.stderr}")
    r = nudge_run("run", "--db", str(work / "u2.db"), "--rules", str(rules), "--events",
                  str(events), "--follow", "--tick", "soon")
    check(r.returncode == 2 and '--tick: "soon" is not a duration' in r.stderr,
          f"--tick soon: {r.stderr}")
    r = nudge_run("deliver", "--db", str(work / "u2.db"), "--webhook", "file:///etc/passwd")
    check(r.returncode == 2 and "--webhook file:///etc/passwd: not an http:// or https:// URL"
          in r.stderr, f"deliver --webhook file://: {r.stderr}")
    r = nudge_run("deliver", "--db", str(work / "u2.db"))
    check(r.returncode == 2 and "needs --webhook URL or --exec COMMAND" in r.stderr,
          f"deliver without a transport: {r.stderr}")

    # nudge run --follow: half a line waits; SIGTERM ends it cleanly; truncation stops it.
    lines = events.read_text().splitlines(keepends=True)
    ev = work / "follow.csv"
    ev.write_text(lines[0] + "".join(lines[1:4]) + lines[4][:5])  # line 5 half written
    clock.write_text("2024-01-01T01:00:00Z\n")  # line 5's time: it would be taken if whole
    db = work / "follow.db"
    out = work / "follow.out"
    err = open(work / "follow.err", "w")
    run = subprocess.Popen([nudge, "run", "--db", str(db), "--rules", str(rules), "--contacts",
                            str(contacts), "--events", str(ev), "--follow", "--tick", "50ms",
                            "--out", str(out)], env=env, stderr=err)

    def consumed():
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            row = con.execute("SELECT value FROM meta WHERE key = 'run.events_lines'").fetchone()
            con.close()
            return int(row[0]) if row else 0
        except sqlite3.Error:
            return 0

    wait_for(lambda: consumed() == 3, "the three complete lines")
    time.sleep(0.3)
    check(consumed() == 3, "a half-written line is not read")
    with open(ev, "a") as f:
        f.write(lines[4][5:])
    wait_for(lambda: consumed() == 4, "the completed line")
    # Without events, the clock fires the timers: c1's welcome_2, 2 days after the signup.
    check("welcome_2" not in out.read_text(), "welcome_2 waits for its time")
    (work / "clock.tmp").write_text("2024-01-03T00:00:00Z\n")
    os.replace(work / "clock.tmp", clock)
    wait_for(lambda: "welcome_2" in out.read_text(), "welcome_2 on the clock alone")
    run.send_signal(signal.SIGTERM)
    rc = run.wait(timeout=30)
    err.close()
    text = (work / "follow.err").read_text()
    check(rc == 0 and "stopped: 4 events processed, 0 rejected (4 lines of" in text,
          f"run --follow after SIGTERM: {rc} {text}")
    # Truncated below what was consumed: stopped, naming the file.
    err = open(work / "follow2.err", "w")
    run = subprocess.Popen([nudge, "run", "--db", str(db), "--rules", str(rules), "--events",
                            str(ev), "--follow", "--tick", "50ms", "--out", str(out)],
                           env=env, stderr=err)
    time.sleep(0.3)
    ev.write_text(lines[0])
    try:
        rc = run.wait(timeout=30)
    except subprocess.TimeoutExpired:
        run.kill()
        rc = None
    err.close()
    text = (work / "follow2.err").read_text()
    check(rc == 1 and f"{ev}: the file has {len(lines[0])} bytes, fewer than the" in text,
          f"truncated events file: {rc} {text}")

    # --follow --events -: standard input spooled beside the database, followed; its end ends
    # the run (a last line without its break is not read); a restart continues in the spool.
    db = work / "stdin.db"
    (work / "clock.tmp").write_text("2024-01-01T01:00:00Z\n")
    os.replace(work / "clock.tmp", clock)
    cmd = [nudge, "run", "--db", str(db), "--rules", str(rules), "--contacts", str(contacts),
           "--events", "-", "--follow", "--tick", "50ms", "--out", str(work / "stdin.out")]
    r = subprocess.run(cmd, input="".join(lines[:6]) + lines[6][:7], capture_output=True,
                       text=True, env=env, timeout=30)
    check(r.returncode == 0 and "standard input ended inside a line (7 bytes without a line "
          "break): not read" in r.stderr and "stopped: 5 events processed" in r.stderr,
          f"run --follow --events -: {r.stderr}")
    spool = Path(str(db) + ".stdin.csv")
    check(spool.read_text() == "".join(lines[:6]), f"the spool: {spool.read_text()}")
    r = subprocess.run(cmd, input=lines[0] + "".join(lines[6:]), capture_output=True, text=True,
                       env=env, timeout=30)
    check(r.returncode == 0 and spool.read_text() == "".join(lines),
          f"a second run on standard input: {r.stderr}")
    r = subprocess.run(cmd, input="ts,contact,type\n", capture_output=True, text=True, env=env,
                       timeout=30)
    check(r.returncode == 1 and 'the header line of standard input, "ts,contact,type", is not '
          "the spool's" in r.stderr, f"another header: {r.stderr}")

    print("deliver_basics: ok" if not failures else f"deliver_basics: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
