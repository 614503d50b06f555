#!/usr/bin/python3
"""Writes the same W1 data as tests/support/gen_w1.py, for logs too large to sort in memory.

    /usr/bin/python3 bench/gen_w1_big.py --contacts 9999999 --events 100000000 [--days 90]
        [--seed 1] --out DIR [--buckets DIR]

gen_w1.py keeps every event in memory to sort it (for 10 M contacts / 100 M events it had
reached 8.7 GB after 3 minutes without writing a line). This script makes the same choices with
the same random generator, in the same order, so its files are byte-identical to gen_w1.py's for
the same arguments (bench/README.md, issue 16, checks it on small sizes), but it writes each
event, as it is made, to the file of its day (--buckets, DIR/buckets by default), then sorts one
day at a time into events.csv. Memory: one day of events and the contacts' weights. The order
within a day is gen_w1.py's (ts, creation order): a day's file holds its events in creation
order and the sort by ts is stable.
"""
import argparse
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "support"))
import gen_w1  # noqa: E402  (the episodes, constants and contacts are gen_w1.py's own)


class BucketShop(gen_w1.Shop):
    """A Shop whose events go to one file per day instead of a list."""

    def __init__(self, rng, days, bucket_dir, limit):
        super().__init__(rng, days)
        self.days = days
        self.limit = limit
        self.count = 0
        self.files = [open(os.path.join(bucket_dir, f"day{d:04d}.csv"), "w", newline="",
                           buffering=1 << 20) for d in range(days)]

    def add(self, ts, contact, kind, key="", value=""):
        # gen_w1.Shop.add, then gen_w1.generate's cut to the first `events` made.
        if gen_w1.START <= ts < self.end and self.count < self.limit:
            self.files[(ts - gen_w1.START) // gen_w1.DAY].write(
                f"{ts},{contact},{kind},{key},{value}\n")
            self.count += 1

    def close(self):
        for f in self.files:
            f.close()


def generate(contacts, events, days, seed, out, bucket_dir):
    rng = random.Random(seed)
    ids = [f"c{i:07d}" for i in range(1, contacts + 1)]
    with open(os.path.join(out, "contacts.csv"), "w", newline="", buffering=1 << 20) as f:
        f.write("contact,status,company,language\n")
        f.writelines(gen_w1.contact_rows(rng, ids))
    os.makedirs(bucket_dir, exist_ok=True)
    shop = BucketShop(rng, days, bucket_dir, events)
    try:
        if contacts > 0 and events > 0:
            gen_w1.make_events(rng, ids, shop, lambda: shop.count >= events)
    finally:
        shop.close()
    del ids
    with open(os.path.join(out, "events.csv"), "w", newline="", buffering=1 << 20) as f:
        f.write("ts,contact,type,key,value\n")
        for d in range(days):
            path = os.path.join(bucket_dir, f"day{d:04d}.csv")
            with open(path, newline="") as b:
                rows = b.readlines()
            rows.sort(key=lambda r: int(r[:r.index(",")]))  # stable: creation order per second
            f.writelines(rows)
            os.remove(path)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contacts", type=int, default=1000)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="directory for contacts.csv and events.csv")
    ap.add_argument("--buckets", help="directory for the per-day files (default OUT/buckets)")
    a = ap.parse_args(argv)
    if not 0 <= a.contacts <= 9_999_999:
        ap.error("--contacts must be in [0, 9999999]")
    if a.events < 0 or a.days < 1:
        ap.error("--events must be >= 0 and --days >= 1")
    if a.events > 0 and a.contacts == 0:
        ap.error("events need at least one contact")
    os.makedirs(a.out, exist_ok=True)
    bucket_dir = a.buckets or os.path.join(a.out, "buckets")
    generate(a.contacts, a.events, a.days, a.seed, a.out, bucket_dir)
    if not a.buckets:
        shutil.rmtree(bucket_dir, ignore_errors=True)
    print(f"{a.out}: {a.contacts} contacts, {a.events} events over {a.days} days (seed {a.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
