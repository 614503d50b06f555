#!/usr/bin/python3
"""nudge on PostgreSQL (issue 18), against a real PostgreSQL 15 server started here.

pg_test.py NUDGE PG_UNIT_TESTS SUPPORT_DIR W1_EXAMPLE_DIR WORK_DIR [--kills N] [--seed S]

Starts a server of its own (Debian postgresql-15: initdb in a temporary directory as the
`postgres` user, since the server refuses root; listening on a Unix socket in that directory only)
and stops it at the end, however the script ends. Exit code 77 (a skip for CTest) only when the
server's binaries are absent. Then:

1. pg_store's unit cases (tests/pg/pg_store_test.cpp, the PG_UNIT_TESTS binary): batch atomicity,
   fencing, balancing, the outbox's keys and claims, refusals.
2. The CLI's refusals, each message checked: an unreachable server, a database without the
   schema, identify events, round-robin owners, a database made for other rules.
3. 4 workers (`nudge run --pg`) replaying W1 small (tests/support/gen_w1.py, 1,000 contacts,
   20,000 events; examples/w1/make_rules.py) against one database, one of them SIGKILLed at random
   moments N times in all (default 20) and restarted each time; a run that ends before its next
   kill ends an episode and the next starts on a new database. After each episode the actions in
   the outbox (`nudge outbox --pg`) equal `nudge replay`'s exactly, as a multiset (each key is
   unique in the outbox, so none is there twice), and `nudge pg stats` prints the per-rule table
   `nudge replay --stats` prints.
4. A worker stopped (SIGSTOP) past its lease while the others take its partitions over and finish,
   then resumed (SIGCONT): it commits nothing more (its log has no batch line after the pause, and
   says why), and the outbox is still exactly the replay's.
"""
import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PGBIN = "/usr/lib/postgresql/15/bin"
UNTIL = "2024-06-01T00:00:00Z"  # after W1 small's last event plus its longest delay


class Server:
    """A throwaway PostgreSQL server on a Unix socket in a temporary directory."""

    def __init__(self):
        # Under /tmp: the socket path must fit in 107 bytes, whatever TMPDIR is.
        self.dir = tempfile.mkdtemp(prefix="nudge-pg-", dir="/tmp")
        self.as_user = []
        if os.geteuid() == 0:
            # The server refuses to run as root: the directory and the server are postgres's.
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = os.path.join(self.dir, "data")
        self.started = False

    def start(self):
        subprocess.run(self.as_user + [os.path.join(PGBIN, "initdb"), "-D", self.data, "-A",
                                       "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # fsync off: a test server, thrown away at the end.
        options = (f"-c listen_addresses='' -k {self.dir} -c fsync=off "
                   "-c synchronous_commit=off -c max_connections=60")
        subprocess.run(self.as_user + [os.path.join(PGBIN, "pg_ctl"), "-D", self.data, "-o",
                                       options, "-l", os.path.join(self.dir, "server.log"), "-w",
                                       "start"], check=True, stdout=subprocess.DEVNULL)
        self.started = True

    def stop(self):
        if self.started:
            subprocess.run(self.as_user + [os.path.join(PGBIN, "pg_ctl"), "-D", self.data, "-m",
                                           "immediate", "stop"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db="postgres"):
        return f"host={self.dir} user=postgres dbname={db}"

    def psql(self, sql, db="postgres"):
        r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-A", "-t", "-v",
                            "ON_ERROR_STOP=1", "-d", self.url(db), "-c", sql],
                           capture_output=True, text=True, check=True)
        return r.stdout.strip()

    def fresh(self, db):
        self.psql(f"DROP DATABASE IF EXISTS {db}")
        self.psql(f"CREATE DATABASE {db}")
        return self.url(db)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_failure(cmd, code, text, what):
    r = subprocess.run(cmd, capture_output=True, text=True)
    check(r.returncode == code and text in r.stderr,
          f"{what}: expected exit {code} and {text!r}, got {r.returncode}: {r.stderr!r}")
    print(f"refused as expected: {what}")


def outbox_lines(nudge, url):
    r = subprocess.run([nudge, "outbox", "--pg", url], capture_output=True, text=True, check=True)
    lines = r.stdout.splitlines()
    check(lines[0] == "ts,contact,rule,action,arg,idempotency_key", f"header: {lines[0]!r}")
    return lines[1:]


def check_outbox(nudge, url, reference, what):
    """The outbox's actions equal the replay's (a multiset), each key once."""
    lines = outbox_lines(nudge, url)
    keys = [line.rsplit(",", 1)[1] for line in lines]
    check(len(keys) == len(set(keys)), f"{what}: a key twice in the outbox")
    actions = sorted(line.rsplit(",", 1)[0] for line in lines)
    if actions != reference:
        missing = sorted(set(reference) - set(actions))[:5]
        extra = sorted(set(actions) - set(reference))[:5]
        raise AssertionError(f"{what}: {len(actions)} actions in the outbox, the replay has "
                             f"{len(reference)}; missing {missing}, extra {extra}")
    # Claimed and marked delivered: a second claim finds nothing.
    check(outbox_lines(nudge, url) == [], f"{what}: actions left after the claim")


def rule_table(stderr_text):
    lines = stderr_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rule "))
    end = start + 1
    while (end < len(lines) and lines[end] and not lines[end].startswith("workflow/step")
           and not re.match(r"^\d+ events read", lines[end])):
        end += 1
    return lines[start:end]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("nudge")
    ap.add_argument("unit")
    ap.add_argument("support")
    ap.add_argument("example")
    ap.add_argument("work")
    ap.add_argument("--cli", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "cli"), help="tests/cli (ok_rules.json)")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=18)
    a = ap.parse_args()
    if not os.path.exists(os.path.join(PGBIN, "initdb")):
        print(f"skipped: {PGBIN}/initdb is absent (Debian package postgresql-15)")
        return 77
    rng = random.Random(a.seed)
    os.makedirs(a.work, exist_ok=True)
    server = Server()
    # CTest's timeout sends SIGTERM: stop the server on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        server.start()
        run_all(a, server, rng)
    finally:
        server.stop()
    print("pg: all passed")
    return 0


def run_all(a, server, rng):
    nudge = a.nudge
    t0 = time.monotonic()
    # 1. Unit cases.
    env = dict(os.environ, NUDGE_PG_URL=server.url())
    subprocess.run([a.unit], env=env, check=True)
    print(f"unit cases passed ({time.monotonic() - t0:.1f} s)")

    # The data: W1 small and its replay.
    data = os.path.join(a.work, "w1-small")
    subprocess.run([sys.executable, os.path.join(a.support, "gen_w1.py"), "--contacts", "1000",
                    "--events", "20000", "--days", "90", "--seed", "1", "--quiet", "--out", data],
                   check=True)
    rules = os.path.join(a.work, "rules.json")
    with open(rules, "w") as f:
        subprocess.run([sys.executable, os.path.join(a.example, "make_rules.py"), "--filler",
                        "20"], stdout=f, check=True)
    contacts = os.path.join(data, "contacts.csv")
    events = os.path.join(data, "events.csv")
    r = subprocess.run([nudge, "replay", "--rules", rules, "--contacts", contacts, "--events",
                        events, "--until", UNTIL, "--time-format", "epoch", "--stats"],
                       capture_output=True, text=True, check=True)
    reference = sorted(r.stdout.splitlines()[1:])
    reference_stats = rule_table(r.stderr)
    print(f"replay: {len(reference)} actions")

    # 2. Refusals.
    def run_cmd(url, worker="w", rules_path=rules, events_path=events, extra=()):
        return [nudge, "run", "--pg", url, "--rules", rules_path, "--events", events_path,
                "--contacts", contacts, "--until", UNTIL, "--worker-id", worker, "--lease", "1s",
                "--batch", "100", *extra]

    expect_failure(run_cmd(f"host={server.dir} user=postgres dbname=no_such_db"), 1,
                   "dbname=no_such_db: cannot connect: ", "an unreachable database")
    empty = server.fresh("cli_empty")
    expect_failure(run_cmd(empty), 1, "no nudge schema in this database (create it with: nudge "
                   "pg init URL [--partitions 64])", "a database without the schema")
    identify = os.path.join(a.work, "identify.csv")
    with open(identify, "w") as f:
        f.write("ts,contact,type,key\n2024-01-01T00:00:00Z,c1,page_view,\n"
                "2024-01-01T00:01:00Z,anon-1,identify,c1\n")
    expect_failure(run_cmd(empty, events_path=identify), 1,
                   "identify.csv: event 2 (contact \"anon-1\") is an identify event: identity "
                   "merges join contacts of different partitions, which nudge run --pg cannot "
                   "split", "identify events")
    rr = os.path.join(a.work, "round_robin.json")
    with open(rr, "w") as f:
        f.write('{"owner_groups": {"sales": ["a", "b"]}, "rules": [{"id": "lead_pricing", "on": '
                '{"event": "page_view"}, "then": [{"do": "assign_owner", "arg": "sales", "pick": '
                '"round_robin"}]}]}')
    expect_failure(run_cmd(empty, rules_path=rr), 1,
                   "round_robin.json: round-robin owner picks in rule \"lead_pricing\": the "
                   "counter runs across contacts in the order one process meets them, which "
                   "partitions by contact cannot reproduce; run these rules in one process "
                   "(nudge run --db)", "round-robin owners")
    expect_failure(run_cmd(empty, extra=["--follow"]), 2, "--follow cannot be combined with --pg",
                   "--follow")
    # init: again is harmless; another partition count is refused.
    url = server.fresh("cli_late")
    r = subprocess.run([nudge, "pg", "init", url, "--partitions", "4"], capture_output=True,
                       text=True, check=True)
    check(r.stdout.endswith(": created schema version 2 with 4 partitions\n"), r.stdout)
    r = subprocess.run([nudge, "pg", "init", url, "--partitions", "4"], capture_output=True,
                       text=True, check=True)
    check(r.stdout.endswith(": schema version 2 already, 4 partitions\n"), r.stdout)
    # A database of schema version 1 (no events table) is migrated in place, and refused by a
    # worker until then.
    v1 = server.fresh("cli_v1")
    subprocess.run([nudge, "pg", "init", v1, "--partitions", "4"], check=True,
                   stdout=subprocess.DEVNULL)
    server.psql("DROP TABLE nudge_events; DROP FUNCTION nudge_events_in_order(); UPDATE nudge_meta "
                "SET value = '1' WHERE key = 'schema_version'", "cli_v1")
    expect_failure(run_cmd(v1), 1, "schema version 1, this build reads version 2 (migrate it: "
                   "nudge pg init URL)", "an older schema")
    r = subprocess.run([nudge, "pg", "init", v1, "--partitions", "4"], capture_output=True,
                       text=True, check=True)
    check(r.stdout.endswith(": migrated schema version 1 to 2\n"), r.stdout)
    check(server.psql("SELECT count(*) FROM nudge_events", "cli_v1") == "0", "no events table")
    expect_failure([nudge, "pg", "init", url, "--partitions", "8"], 1,
                   "the database has 4 partitions, not 8: the count is fixed when it is created",
                   "another partition count")
    # A late event: appended after a run that went on to a later --until.
    late = os.path.join(a.work, "late.csv")
    with open(late, "w") as f:
        f.write("ts,contact,type,key\n2024-01-01T00:00:00Z,c1,page_view,/\n"
                "2024-01-01T05:00:00Z,c1,page_view,/\n")
    small = [nudge, "run", "--pg", url, "--rules", os.path.join(a.cli, "ok_rules.json"),
             "--events", late, "--worker-id", "late"]
    subprocess.run(small + ["--until", "2024-01-01T10:00:00Z"], check=True,
                   capture_output=True)
    before = server.psql("SELECT sum(next_event), count(*) FROM nudge_progress", "cli_late")
    with open(late, "a") as f:
        f.write("2024-01-01T06:00:00Z,c1,page_view,/\n")
    expect_failure(small + ["--until", "2024-01-01T12:00:00Z"], 1,
                   "late.csv: event 3 (contact \"c1\") at 2024-01-01T06:00:00Z is before "
                   "2024-01-01T10:00:00Z, the time its partition ", "a late event")
    check(server.psql("SELECT sum(next_event), count(*) FROM nudge_progress", "cli_late")
          == before, "the late event's batch was committed")
    # Another rule program on that database.
    expect_failure(small[:5] + [rules] + small[6:] + ["--until", "2024-01-01T12:00:00Z"], 1,
                   "the database belongs to another rule program (fingerprint ",
                   "a database made for other rules")

    def check_stats(url, what):
        r = subprocess.run([nudge, "pg", "stats", url, "--rules", rules], capture_output=True,
                           text=True, check=True)
        check(rule_table(r.stderr) == reference_stats,
              f"{what}: statistics differ:\n{r.stderr}\nreplay:\n" + "\n".join(reference_stats))

    # 3. Four workers, one SIGKILLed at random moments.
    kills = 0
    episode = 0
    while kills < a.kills or episode == 0:
        episode += 1
        url = server.fresh("w1")
        subprocess.run([nudge, "pg", "init", url, "--partitions", "64"], check=True,
                       stdout=subprocess.DEVNULL)
        logs = [open(os.path.join(a.work, f"worker{i}.log"), "w") for i in range(4)]

        def start(i):
            return subprocess.Popen(run_cmd(url, worker=f"w{i}"), stdout=subprocess.DEVNULL,
                                    stderr=logs[i])

        workers = [start(i) for i in range(4)]
        started = time.monotonic()
        kills_here = 0
        while workers[0].poll() is None:
            if kills >= a.kills:
                break
            time.sleep(rng.uniform(0.02, 0.25))
            if workers[0].poll() is not None:
                break
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            kills += 1
            kills_here += 1
            workers[0] = start(0)
        for i, w in enumerate(workers):
            rc = w.wait(timeout=120)
            check(rc == 0, f"episode {episode}: worker w{i} exited {rc}, see "
                  f"{a.work}/worker{i}.log")
        for f in logs:
            f.close()
        check_outbox(nudge, url, reference, f"episode {episode}")
        check_stats(url, f"episode {episode}")
        print(f"episode {episode}: {kills_here} kills, {time.monotonic() - started:.1f} s; the "
              f"outbox equals the replay ({len(reference)} actions), statistics equal")

    # 4. A worker stopped past its lease.
    url = server.fresh("w1_pause")
    subprocess.run([nudge, "pg", "init", url, "--partitions", "64"], check=True,
                   stdout=subprocess.DEVNULL)
    paused_log = os.path.join(a.work, "paused.log")
    with open(paused_log, "w") as log:
        paused = subprocess.Popen(run_cmd(url, worker="paused", extra=["--log-format", "text"]),
                                  stdout=subprocess.DEVNULL, stderr=log)
        others = [subprocess.Popen(run_cmd(url, worker=f"o{i}"), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL) for i in range(2)]
        deadline = time.monotonic() + 60

        def commits():
            with open(paused_log) as f:
                return sum("batch committed by worker paused" in line for line in f)

        while commits() < 3:
            check(time.monotonic() < deadline and paused.poll() is None,
                  "the worker to pause committed no batch")
            time.sleep(0.01)
        paused.send_signal(signal.SIGSTOP)
        before = commits()
        # The others see its heartbeat and leases expire (1 s), take its partitions over and
        # finish every partition.
        for o in others:
            check(o.wait(timeout=60) == 0, "a worker beside the paused one failed")
        paused.send_signal(signal.SIGCONT)
        check(paused.wait(timeout=60) == 0, f"the resumed worker failed: see {paused_log}")
    with open(paused_log) as f:
        text = f.read()
    check(commits() == before, f"the resumed worker committed {commits() - before} batches")
    after = text.splitlines()[-3:]
    why = ("lost its lease" in text or "reconnecting without partitions" in text)
    check(why, f"the resumed worker does not say why it committed nothing:\n{text}")
    check(f"worker paused: {before} batches committed" in text, f"its summary:\n{after}")
    check_outbox(nudge, url, reference, "the pause")
    check_stats(url, "the pause")
    reason = "fenced: lease lost" if "lost its lease" in text else "its session was ended"
    print(f"paused worker: {before} batches before SIGSTOP, none after SIGCONT ({reason}); "
          f"the outbox equals the replay")

    # 5. Events from the table hosts insert into (COPY and INSERT go through its trigger).
    url = server.fresh("w1_table")
    subprocess.run([nudge, "pg", "init", url, "--partitions", "16"], check=True,
                   stdout=subprocess.DEVNULL)
    server.psql(f"\\copy nudge_events(ts, contact, type, key, value) FROM '{events}' WITH (FORMAT "
                "csv, HEADER true)", "w1_table")
    table_cmd = [nudge, "run", "--pg", url, "--rules", rules, "--events-table", "--contacts",
                 contacts, "--until", UNTIL, "--lease", "1s", "--batch", "500"]
    workers = [subprocess.Popen(table_cmd + ["--worker-id", f"t{i}"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for i in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=120)
        check(w.returncode == 0, f"a worker on the events table failed: {err}")
    check_outbox(nudge, url, reference, "the events table")
    check_stats(url, "the events table")
    print("events table: 2 workers, the outbox equals the replay")
    bad = server.fresh("bad_table")
    subprocess.run([nudge, "pg", "init", bad, "--partitions", "4"], check=True,
                   stdout=subprocess.DEVNULL)
    server.psql("INSERT INTO nudge_events(ts, contact, type) VALUES ('2024-01-01T00:00:00Z', "
                "'c1', 'page_view'), ('yesterday', 'c1', 'page_view')", "bad_table")
    expect_failure([nudge, "run", "--pg", bad, "--rules", rules, "--events-table"], 1,
                   "nudge_events: row seq 2: ", "a bad row of the events table")
    check(server.psql("SELECT count(*) FROM nudge_contacts", "bad_table") == "0",
          "a bad row: something was written")
    print(f"total {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
