#!/usr/bin/env python3
"""live_deliver.py NUDGE SUPPORT_DIR W1_EXAMPLE_DIR WORK_DIR: nudge run --follow and nudge deliver
--follow together against a flaky webhook (docs/live.md, "Delivery"; issue 20).

A writer appends W1 small (tests/support/gen_w1.py, rules from examples/w1/make_rules.py) to an
events file in bursts (a burst may end in half a line, completed by the next), and moves the
clock (NUDGE_CLOCK_FILE: the wall clock of nudge run) to the last complete event after each.
`nudge run --follow --outbox-only` consumes it; `nudge deliver --follow --webhook` posts to
tests/cli/flaky_server.py on 127.0.0.1, which fails 30 % of the requests (seeded) and is killed
(SIGKILL) and restarted twice. nudge run is stopped with SIGTERM in the middle and restarted, and
so is nudge deliver. At the end the clock moves 40 days past the last event:

- the server accepted (2xx) every external action of `nudge replay --until END` at least once,
  (the W1 assign_owner too: it has notify), and nothing else;
- every request with the same idempotency key carried the same body;
- the dead-letter table is empty (nudge outbox --dead), the outbox too, nudge db check is clean;
- each SIGTERM ended its process with exit code 0 and its summary line;
- the two nudge run processes' metrics (--metrics-file) add up to the replay's actions, per
  rule and verb.

Prints the figures (actions, requests, repeats, duration). Standard library only.
"""
import collections
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

EXTERNAL = {"send_email", "send_sms", "web_push", "notify_owner", "generate_coupon", "webhook",
            "show_popup", "send_chat"}
HERE = Path(__file__).resolve().parent


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def wait_for(cond, what, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    fail(f"timed out waiting for {what}")


def main():
    nudge, support, example, work = sys.argv[1:5]
    work = Path(work)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    py = sys.executable
    subprocess.run([py, f"{support}/gen_w1.py", "--contacts", "1000", "--events", "20000",
                    "--days", "90", "--seed", "1", "--quiet", "--out", str(work / "w1")],
                   check=True)
    rules = work / "rules.json"
    with open(rules, "w") as f:
        subprocess.run([py, f"{example}/make_rules.py", "--filler", "7"], stdout=f, check=True)
    contacts = work / "w1" / "contacts.csv"
    lines = (work / "w1" / "events.csv").read_text().splitlines(keepends=True)
    header, events = lines[0], lines[1:]
    ts_of = [int(line.split(",", 1)[0]) for line in events]
    end = ts_of[-1] + 40 * 86400

    clock = work / "clock"

    def set_clock(t):  # atomically: nudge run reads the file at any moment
        (work / "clock.tmp").write_text(f"{t}\n")
        os.replace(work / "clock.tmp", clock)

    set_clock(ts_of[0] - 1)
    env = dict(os.environ, NUDGE_CLOCK_FILE=str(clock))
    db = work / "state.db"
    ev = work / "events.csv"
    ev.write_text(header)

    # The server.
    port_file, log = work / "port", work / "requests.jsonl"
    server_runs = 0

    def start_server(port):
        nonlocal server_runs
        server_runs += 1
        if port_file.exists():
            port_file.unlink()
        p = subprocess.Popen([py, str(HERE / "flaky_server.py"), "--port", str(port),
                              "--port-file", str(port_file), "--log", str(log),
                              "--seed", str(server_runs), "--fail", "0.3"])
        wait_for(port_file.exists, "the server to listen")
        return p, int(port_file.read_text())

    server, port = start_server(0)

    run_cmd = [nudge, "run", "--db", str(db), "--rules", str(rules), "--contacts", str(contacts),
               "--events", str(ev), "--follow", "--outbox-only", "--tick", "100ms"]
    deliver_cmd = [nudge, "deliver", "--db", str(db), "--webhook", f"http://127.0.0.1:{port}/hook",
                   "--follow", "--poll", "50ms", "--backoff", "2ms", "--backoff-max", "100ms",
                   "--max-attempts", "200", "--timeout", "2s"]

    def start(cmd, name):
        return subprocess.Popen(cmd, env=env, stderr=open(work / f"{name}.err", "a"),
                                stdout=subprocess.DEVNULL)

    def stop(p, name):
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=30)
        text = (work / f"{name}.err").read_text()
        if rc != 0:
            fail(f"{name} exited with {rc} after SIGTERM:\n{text}")
        return text

    # Each nudge run process writes its own metrics (counters start at 0 per process).
    def run_cmd_with_metrics(n):
        return run_cmd + ["--metrics-file", str(work / f"run{n}.prom")]

    run = start(run_cmd_with_metrics(1), "run")
    # The run creates the database; the deliverer needs it (and its stored rules).
    wait_for(lambda: subprocess.run([nudge, "outbox", "--db", str(db)], capture_output=True)
             .returncode == 0, "the database")
    deliver = start(deliver_cmd, "deliver")

    bursts = 24
    per = (len(events) + bursts - 1) // bursts
    written = 0
    torn = ""  # the start of a line written without its end
    for b in range(bursts):
        chunk = events[written:written + per]
        written += len(chunk)
        text = torn + "".join(chunk)
        torn = ""
        if b % 3 == 1 and written < len(events):
            nxt = events[written]
            torn = nxt[len(nxt) // 2:]
            text += nxt[:len(nxt) // 2]  # half a line: nudge run must wait for the rest
            written += 1
            complete_ts = ts_of[written - 2]
        else:
            complete_ts = ts_of[written - 1]
        with open(ev, "a") as f:
            f.write(text)
        set_clock(complete_ts)
        time.sleep(0.25)
        for p, name in ((run, "run"), (deliver, "deliver")):
            if p.poll() is not None:
                fail(f"nudge {name} ended early:\n{(work / f'{name}.err').read_text()}")
        if b in (5, 15):
            server.kill()
            server.wait()
            time.sleep(0.4)
            server, _ = start_server(port)
        if b == 9:
            out = stop(run, "run")
            if "stopped: " not in out:
                fail(f"nudge run printed no summary after SIGTERM:\n{out}")
            run = start(run_cmd_with_metrics(2), "run")
        if b == 12:
            out = stop(deliver, "deliver")
            if "(stopped)" not in out:
                fail(f"nudge deliver printed no summary after SIGTERM:\n{out}")
            deliver = start(deliver_cmd, "deliver")
    if torn:
        with open(ev, "a") as f:
            f.write(torn)
    set_clock(end)

    def run_now():
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            row = con.execute("SELECT value FROM meta WHERE key = 'run.now'").fetchone()
            con.close()
            return int(row[0]) if row else None
        except sqlite3.Error:
            return None

    wait_for(lambda: run_now() == end, "nudge run to reach the end", timeout=60)

    def outbox_empty():
        r = subprocess.run([nudge, "outbox", "--db", str(db)], capture_output=True, text=True)
        return r.returncode == 0 and r.stdout.count("\n") == 1

    wait_for(outbox_empty, "nudge deliver to empty the outbox", timeout=60)
    run_err = stop(run, "run")
    stop(deliver, "deliver")
    server.kill()
    server.wait()
    duration = time.monotonic() - started

    # The reference: replay up to the same end.
    r = subprocess.run([nudge, "replay", "--rules", str(rules), "--contacts", str(contacts),
                        "--events", str(work / "w1" / "events.csv"), "--until", str(end),
                        "--time-format", "epoch"], capture_output=True, text=True, check=True)
    # The metrics of the two nudge run processes add up to the replay's actions, per rule and
    # verb (with --outbox-only they count what each committed to the outbox).
    counted = collections.Counter()
    for n in (1, 2):
        for m in re.finditer(r'^nudge_actions_total\{rule="([^"]*)",action="([^"]*)"\} (\d+)$',
                             (work / f"run{n}.prom").read_text(), re.M):
            counted[(m.group(1), m.group(2))] += int(m.group(3))
    replayed = collections.Counter(tuple(line.split(",")[2:4])
                                   for line in r.stdout.splitlines()[1:])
    if counted != replayed:
        fail(f"metrics count {sum(counted.values())} actions, replay has "
             f"{sum(replayed.values())}: {counted} != {replayed}")

    expected = []
    for line in r.stdout.splitlines()[1:]:
        ts, contact, rule, action, arg = line.split(",")
        if action in EXTERNAL or action == "assign_owner":
            expected.append((int(ts), contact, rule, action, arg))

    requests = 0
    bodies = {}
    accepted = set()
    for line in log.read_text().splitlines():
        requests += 1
        req = json.loads(line)
        key, body = req["key"], req["body"]
        if req["type"] != "application/json":
            fail(f"Content-Type {req['type']}")
        if bodies.setdefault(key, body) != body:
            fail(f"key {key} came with two bodies:\n{bodies[key]}\n{body}")
        a = json.loads(body)
        if a["idempotency_key"] != key:
            fail(f"Idempotency-Key {key} but the body says {a['idempotency_key']}")
        if req["status"] == 200:
            accepted.add(key)
    got = []
    for key in accepted:
        a = json.loads(bodies[key])
        t = a["ts"]
        epoch = int(time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone)
        got.append((epoch, a["contact"], a["rule"], a["action"], a["arg"]))
    if sorted(got) != sorted(expected):
        missing = sorted(set(expected) - set(got))[:5]
        extra = sorted(set(got) - set(expected))[:5]
        fail(f"accepted {len(got)} actions, replay has {len(expected)}; missing {missing}, "
             f"extra {extra}")
    if len(bodies) != len(accepted):
        fail(f"{len(bodies) - len(accepted)} keys were never accepted")
    dead = subprocess.run([nudge, "outbox", "--dead", "--db", str(db)], capture_output=True,
                          text=True, check=True).stdout
    if dead != "sequence,attempts,error,action\n":
        fail(f"dead letters:\n{dead}")
    check = subprocess.run([nudge, "db", "check", str(db)], capture_output=True, text=True)
    if check.returncode != 0:
        fail(f"nudge db check:\n{check.stdout}{check.stderr}")
    if run_err.count("stopped: ") != 2:
        fail(f"nudge run's summaries:\n{run_err}")
    per_key = {}
    for line in log.read_text().splitlines():
        k = json.loads(line)["key"]
        per_key[k] = per_key.get(k, 0) + 1
    repeated = sum(1 for n in per_key.values() if n > 1)
    print(f"live_deliver: {len(expected)} actions, {requests} requests "
          f"({requests - len(expected)} repeats; {repeated} actions posted more than once, "
          f"at most {max(per_key.values())} times), server started {server_runs} times, "
          f"{duration:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
