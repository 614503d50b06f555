#!/usr/bin/python3
"""nudge.distributed on this machine: one process (`nudge replay`) against a LocalCluster of 1 and
2 worker processes, on a W1 data set (bench/README.md, "Issue 17").

    PYTHONPATH=build/bindings/python /usr/bin/python3 bench/distributed_bench.py \\
        --data DIR --rules rules.json --cli build/src/cli/nudge [--partitions 4]

DIR holds contacts.csv and events.csv (tests/support/gen_w1.py). Prints, per configuration, the
wall time, events per second, each stage's seconds, the bytes shuffled and each worker's peak
RSS (ru_maxrss of the worker process, its baseline after start-up beside it); checks that the
output is byte-identical to one process's.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time


def peak_rss_mb():
    """VmHWM: this process's own peak (ru_maxrss would carry the spawning parent's across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--range-bytes", type=int, default=None,
                    help="bytes of the log per read task (default: replay()'s)")
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    import nudge.distributed as nd

    events = os.path.join(args.data, "events.csv")
    contacts = os.path.join(args.data, "contacts.csv")
    n_events = sum(1 for _ in open(events, "rb")) - 1
    tmp = tempfile.mkdtemp(prefix="nudge-dist-bench-")
    one = os.path.join(tmp, "one.csv")
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([args.cli, "replay", "--rules", args.rules, "--events", events, "--contacts",
                    contacts, "--out", one], check=True, capture_output=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(f"one process: {wall:.2f} s wall, {cpu:.2f} s CPU, {n_events / wall / 1e6:.2f} M ev/s, "
          f"peak RSS {after.ru_maxrss / 1024:.0f} MB")
    for workers in [int(w) for w in args.workers.split(",")]:
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None) as cluster, \
                Client(cluster) as client:
            base = client.run(peak_rss_mb)
            out = os.path.join(tmp, f"dist{workers}.csv")
            t = time.perf_counter()
            r = nd.replay(args.rules, events, contacts, client=client,
                          partitions=args.partitions, out=out, range_bytes=args.range_bytes)
            wall = time.perf_counter() - t
            peak = client.run(peak_rss_mb)
            same = open(out, "rb").read() == open(one, "rb").read()
            stages = ", ".join(f"{k} {v:.2f}" for k, v in r.timings.items())
            rss = ", ".join(f"{peak[w]:.0f} MB (baseline {base[w]:.0f})" for w in sorted(peak))
            print(f"{workers} worker(s), {args.partitions} partitions, {r.ranges} ranges: "
                  f"{wall:.2f} s wall, {n_events / wall / 1e6:.2f} M ev/s; stages (s): {stages}; "
                  f"shuffled {r.shuffle_bytes / 1e6:.1f} MB; peak RSS per worker: {rss}; "
                  f"client peak RSS {peak_rss_mb():.0f} MB; identical: {same}")
            for i, part in enumerate(r.partitions):
                print(f"  partition {i}: {part['events']} events, "
                      f"{part['shuffle_bytes'] / 1e6:.1f} MB shuffled in, {part['actions']} "
                      f"actions, {part['cpu']:.2f} s CPU "
                      f"({part['events'] / max(part['cpu'], 1e-9) / 1e6:.2f} M ev/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
