#!/usr/bin/python3
"""Throughput of `nudge run --pg` with 1, 2 and 4 workers (issue 18; bench/README.md).

pg_throughput.py NUDGE SUPPORT_DIR W1_EXAMPLE_DIR WORK_DIR [--contacts 20000] [--events 200000]
                 [--workers 1,2,4] [--repeat 3] [--batch 1000]

Starts a PostgreSQL 15 server of its own (tests/pg/pg_test.py's Server, but with the server's
default durability: fsync and synchronous_commit on), generates W1 data (gen_w1.py, seed 3),
and for each worker count runs the workers on a fresh database (`nudge pg init`, 64 partitions)
until every partition is done, `--until` past the last event. Per run: wall time from the start
of the first worker to the end of the last, events per second of wall time, the workers' CPU
(their rusage) and the server's CPU (the postmaster's own and reaped children's times from
/proc/PID/stat, plus the CPU of its live children, before and after), and the server's share of
the CPU. Prints a Markdown table row per run. The outbox is checked against `nudge replay`.
Run it niced (nice -n 10) on a quiet machine.
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "pg"))
import pg_test  # noqa: E402  (the Server class)

TICK = os.sysconf("SC_CLK_TCK")


def proc_times(pid):
    """(utime + stime, cutime + cstime) of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command: state is fields[0]; utime, stime, cutime, cstime are fields 11..14.
    return ((int(fields[11]) + int(fields[12])) / TICK, (int(fields[13]) + int(fields[14])) / TICK)


def server_cpu(postmaster):
    """The server's CPU so far: the postmaster's own, its reaped children's, its live ones'."""
    own, reaped = proc_times(postmaster)
    live = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                live += (int(fields[11]) + int(fields[12])) / TICK
        except (FileNotFoundError, ProcessLookupError):
            continue
    return own + reaped + live


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("nudge")
    ap.add_argument("support")
    ap.add_argument("example")
    ap.add_argument("work")
    ap.add_argument("--contacts", type=int, default=20000)
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    data = os.path.join(a.work, f"w1-{a.contacts}")
    if not os.path.exists(os.path.join(data, "events.csv")):
        subprocess.run([sys.executable, os.path.join(a.support, "gen_w1.py"), "--contacts",
                        str(a.contacts), "--events", str(a.events), "--days", "90", "--seed", "3",
                        "--quiet", "--out", data], check=True)
    rules = os.path.join(a.work, "rules.json")
    with open(rules, "w") as f:
        subprocess.run([sys.executable, os.path.join(a.example, "make_rules.py"), "--filler",
                        "20"], stdout=f, check=True)
    contacts = os.path.join(data, "contacts.csv")
    events = os.path.join(data, "events.csv")
    until = "2024-06-01T00:00:00Z"
    r = subprocess.run([a.nudge, "replay", "--rules", rules, "--contacts", contacts, "--events",
                        events, "--until", until, "--time-format", "epoch"], capture_output=True,
                       text=True, check=True)
    reference = sorted(r.stdout.splitlines()[1:])
    n_events = sum(1 for _ in open(events)) - 1

    server = pg_test.Server()
    try:
        # The default durability (fsync, synchronous_commit on), unlike the tests' server.
        subprocess.run(server.as_user + [os.path.join(pg_test.PGBIN, "initdb"), "-D", server.data,
                                         "-A", "trust", "-U", "postgres", "-E", "UTF8"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(server.as_user + [os.path.join(pg_test.PGBIN, "pg_ctl"), "-D", server.data,
                                         "-o", f"-c listen_addresses='' -k {server.dir}", "-l",
                                         os.path.join(server.dir, "server.log"), "-w", "start"],
                       check=True, stdout=subprocess.DEVNULL)
        server.started = True
        with open(os.path.join(server.data, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        print(f"{n_events} events, {a.contacts} contacts, batch {a.batch}; server pid {postmaster}")
        print("| workers | run | wall s | events/s | workers' CPU s | server CPU s | server share |")
        print("|---|---|---|---|---|---|---|")
        for n in [int(x) for x in a.workers.split(",")]:
            for run in range(1, a.repeat + 1):
                url = server.fresh("bench")
                subprocess.run([a.nudge, "pg", "init", url, "--partitions", "64"], check=True,
                               stdout=subprocess.DEVNULL)
                cpu0 = server_cpu(postmaster)
                t0 = time.monotonic()
                procs = [subprocess.Popen(["nice", "-n", "10", a.nudge, "run", "--pg", url,
                                           "--rules", rules, "--contacts", contacts, "--events",
                                           events, "--until", until, "--batch", str(a.batch),
                                           "--worker-id", f"w{i}"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL) for i in range(n)]
                workers_cpu = 0.0
                for p in procs:
                    _, status, usage = os.wait4(p.pid, 0)
                    p.returncode = os.waitstatus_to_exitcode(status)
                    if p.returncode != 0:
                        raise SystemExit(f"a worker exited {p.returncode}")
                    workers_cpu += usage.ru_utime + usage.ru_stime
                wall = time.monotonic() - t0
                cpu = server_cpu(postmaster) - cpu0
                out = subprocess.run([a.nudge, "outbox", "--pg", url], capture_output=True,
                                     text=True, check=True).stdout.splitlines()[1:]
                if sorted(line.rsplit(",", 1)[0] for line in out) != reference:
                    raise SystemExit("the outbox differs from the replay")
                print(f"| {n} | {run} | {wall:.2f} | {n_events / wall:,.0f} | {workers_cpu:.2f} | "
                      f"{cpu:.2f} | {cpu / (cpu + workers_cpu):.0%} |", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
