#!/usr/bin/env python3
"""Python bindings throughput on W1 (tests/support/gen_w1.py): events/s from a list of tuples
(Engine.process) and through Engine.replay from a file, against the `nudge replay` CLI.

    PYTHONPATH=build/bindings/python /usr/bin/python3 bench/python_bench.py \\
        --cli build/src/cli/nudge [--size medium] [--repeat 3]

Verifies once that the three paths write the same actions, then reports the best of N runs.
"""
import argparse
import csv
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import nudge

ROOT = pathlib.Path(__file__).resolve().parents[1]
GEN_W1 = ROOT / "tests" / "support" / "gen_w1.py"
SIZES = {"small": ("1000", "20000", "1"), "medium": ("100000", "1000000", "2")}
DAY = 86400


def best(repeat, f):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - t)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="medium")
    parser.add_argument("--filler", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cli", default=os.environ.get("NUDGE_CLI"))
    parser.add_argument("--data", help="directory for the generated data (default: a temp dir)")
    args = parser.parse_args()

    work = pathlib.Path(args.data or tempfile.mkdtemp(prefix="nudge-pybench-"))
    data = work / args.size
    contacts_n, events_n, seed = SIZES[args.size]
    if not (data / "events.csv").exists():
        subprocess.run([sys.executable, str(GEN_W1), "--contacts", contacts_n,
                        "--events", events_n, "--days", "90", "--seed", seed, "--out", str(data)],
                       check=True, stdout=subprocess.DEVNULL)
    rules = work / f"rules_k{args.filler}.json"
    rules.write_bytes(subprocess.run(
        [sys.executable, str(ROOT / "examples" / "w1" / "make_rules.py"), "--filler",
         str(args.filler)], check=True, capture_output=True).stdout)
    contacts_path, events_path = data / "contacts.csv", data / "events.csv"
    program = nudge.Program.load(rules)

    # Events as Python objects, read once outside the timing.
    with open(contacts_path, newline="") as f:
        contacts = [(r["contact"], r["status"],
                     {k: r[k] for k in ("company", "language") if r[k]}) for r in csv.DictReader(f)]
    with open(events_path, newline="") as f:
        events = [(r["contact"], r["type"], int(r["ts"]), r["key"],
                   {"value": float(r["value"])} if r["value"] else None)
                  for r in csv.DictReader(f)]
    until = events[-1][2] + 90 * DAY

    def fresh_engine():
        engine = nudge.Engine(program)
        engine.upsert_contacts({"id": cid, "status": status, "details": details}
                               for cid, status, details in contacts)
        return engine

    # Tuples: time only process() (conversion + evaluation + DueAction list).
    tuple_times = []
    for _ in range(args.repeat):
        engine = fresh_engine()
        t = time.perf_counter()
        due = engine.process(events, now=until)
        tuple_times.append(time.perf_counter() - t)
    t_tuples = min(tuple_times)

    # The binding's share: converting the tuples, measured by a batch whose last event is refused
    # before any evaluation (an empty contact id fails at grouping).
    bad = events + [("", "signup", until, "", None)]
    convert_times = []
    for _ in range(args.repeat):
        engine = nudge.Engine(program)
        t = time.perf_counter()
        try:
            engine.process(bad, now=until)
        except nudge.InputError:
            pass
        convert_times.append(time.perf_counter() - t)
    t_convert = min(convert_times)

    out_py = work / "py_actions.csv"

    def py_replay():
        result = nudge.Engine(program).replay(events_path, contacts=contacts_path, until=until)
        result.write_csv(out_py, time_format="epoch")
        return result

    t_replay, result = best(args.repeat, py_replay)

    lines = ["ts,contact,rule,action,arg"] + [
        f"{a.ts_epoch},{a.contact},{a.rule},{a.action},{a.arg}" for a in due]
    assert "\n".join(lines) + "\n" == out_py.read_text(), "process() and replay() differ"

    print(f"W1 {args.size}: {len(events):,} events, {len(contacts):,} contacts, "
          f"K={args.filler}, {len(due):,} actions; best of {args.repeat}")
    print(f"  Engine.process(list of tuples): {t_tuples * 1e3:8.1f} ms  "
          f"{len(events) / t_tuples / 1e6:6.2f} M events/s")
    print(f"    of which converting the tuples: {t_convert * 1e3:6.1f} ms  "
          f"{len(events) / t_convert / 1e6:6.2f} M events/s")
    print(f"  Engine.replay(file) + write_csv: {t_replay * 1e3:7.1f} ms  "
          f"{len(events) / t_replay / 1e6:6.2f} M events/s")
    if args.cli:
        out_cli = work / "cli_actions.csv"
        cmd = [args.cli, "replay", "--rules", str(rules), "--contacts", str(contacts_path),
               "--events", str(events_path), "--until", str(until), "--time-format", "epoch",
               "--out", str(out_cli)]
        t_cli, _ = best(args.repeat, lambda: subprocess.run(cmd, check=True))
        assert out_cli.read_bytes() == out_py.read_bytes(), "CLI and Python replay differ"
        print(f"  nudge replay (CLI process):      {t_cli * 1e3:7.1f} ms  "
              f"{len(events) / t_cli / 1e6:6.2f} M events/s")
        print(f"  Python replay / CLI: {t_replay / t_cli:.3f}")


if __name__ == "__main__":
    main()
