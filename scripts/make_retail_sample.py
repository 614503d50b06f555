#!/usr/bin/env python3
"""Makes examples/data/online_retail.*.csv: a small sample of the UCI "Online Retail" event log
(CC BY 4.0; see examples/data/README.md) for the notebook example.

    python3 scripts/make_retail_sample.py DATA/online_retail_uci examples/data

(DATA: where the project's data sets are kept; the tests never run this script.)

Input: the project's cleaned copy of the data set (events.csv.gz: ts,contact,type,key,value,
one row per invoice; contacts.csv: contact,country). Output: every event and the contact row of
each customer whose id is a multiple of 15 (about one customer in fifteen, all of a customer's
history kept so recency rules see real gaps), unchanged, in the input's order. Deterministic:
the same input gives the same bytes. Standard library only; nothing in the tests runs it.
"""
import csv
import gzip
import pathlib
import sys

EVERY = 15


def main(source, out):
    source, out = pathlib.Path(source), pathlib.Path(out)
    keep = lambda contact: int(contact) % EVERY == 0  # noqa: E731
    with gzip.open(source / "events.csv.gz", "rt", newline="") as f, \
            open(out / "online_retail.events.csv", "w", newline="") as g:
        reader, writer = csv.reader(f), csv.writer(g, lineterminator="\n")
        writer.writerow(next(reader))
        events = 0
        for row in reader:
            if keep(row[1]):
                writer.writerow(row)
                events += 1
    with open(source / "contacts.csv", newline="") as f, \
            open(out / "online_retail.contacts.csv", "w", newline="") as g:
        reader, writer = csv.reader(f), csv.writer(g, lineterminator="\n")
        writer.writerow(next(reader))
        contacts = 0
        for row in reader:
            if keep(row[0]):
                writer.writerow(row)
                contacts += 1
    print(f"{events} events of {contacts} contacts -> {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
