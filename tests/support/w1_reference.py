#!/usr/bin/python3
"""A plain Python implementation of workload W1, the oracle the W1 tests compare `nudge` with.

    /usr/bin/python3 tests/support/w1_reference.py --contacts contacts.csv --events events.csv
        [--filler K] [--out actions.csv]

Written straight from the W1 spec (the workload's WORKLOAD.md), sharing no code with nudge, so
that a test comparing the two compares two readings of the spec. Checked by hand against the
workload's published output (W1 small, seed 1, K = 100: byte-identical).

The rules it implements, as the spec states them (1h = 3600 s, 1d = 86400 s):
  R7 become_customer  on purchase: status = customer, before any other rule sees the purchase.
  R1 winback          on purchase at t, a check at c = t + 60d: send_email winback if there is
                      no purchase with ts in (c - 60d, c].
  R2 abandoned_cart   on cart at t, a check at c = t + 1h: send_email cart_reminder if there is
                      no purchase in (c - 1h, c] and R2 emitted nothing for the contact in
                      (c - 24h, c].
  R3 coupon           on tag_added ZAKUPY-W-SEKCJI-MESKIEJ, if status is customer:
                      generate_coupon coupon, then send_email coupon.
  R4 lead_assign      on page_view /pricing, if company is non-empty and there is no owner yet:
                      owner = [anna, bartek, celina][fnv1a64(contact id) % 3], assign_owner.
  R5 loyalty          on purchase, if it is the contact's 5th purchase ever: send_sms loyalty.
  R6 welcome          on signup at t: send_email welcome_1 at t, welcome_2 at t + 2d, and at
                      t + 14d welcome_3 only if an email_open has ts in (t, t + 14d].
  interest_<i>        (i < K) on page_view /p/<i>: web_push p<i>, once per contact ever.
Rules react to an event in the order R7, R1..R6, interest_0..interest_<K-1>.

Clock: from the first event to until = last event + 90d. Events with ts <= T are applied before
a timer due at T fires; timers due at the same instant fire in the order they were scheduled.
Output: `ts,contact,rule,action,arg`, ts the time the action became due, sorted by (ts, contact)
with ties in emission order (a stable sort); header always written; lines end in \\n.
Bad input (header, field count, ts, unknown contact or type) ends with `file:line: reason`.
"""
import argparse
import heapq
import sys

HOUR = 3600
DAY = 86400
OWNERS = ["anna", "bartek", "celina"]
TYPES = {"page_view", "cart", "purchase", "email_open", "tag_added", "signup"}
MEN = "ZAKUPY-W-SEKCJI-MESKIEJ"


class InputError(Exception):
    pass


def fnv1a64(data):
    h = 14695981039346656037
    for b in data:
        h ^= b
        h = (h * 1099511628211) % (1 << 64)
    return h


def read_csv(path, header):
    """Yields (line number, fields) of a headed, comma-separated file with no quoting."""
    with open(path, newline="") as f:
        first = f.readline().rstrip("\n")
        if first != header:
            raise InputError(f"{path}:1: header must be {header!r}, not {first!r}")
        width = header.count(",") + 1
        for number, line in enumerate(f, start=2):
            fields = line.rstrip("\n").split(",")
            if len(fields) != width:
                raise InputError(f"{path}:{number}: {len(fields)} fields, {width} expected")
            yield number, fields


def read_contacts(path):
    contacts = {}
    for number, (cid, status, company, language) in read_csv(
            path, "contact,status,company,language"):
        if status not in ("lead", "customer"):
            raise InputError(f"{path}:{number}: status {status!r} is not lead or customer")
        if cid in contacts:
            raise InputError(f"{path}:{number}: contact {cid!r} appears twice")
        contacts[cid] = {"status": status, "company": company, "owner": None, "purchases": [],
                         "purchase_count": 0, "opens": [], "reminders": [], "pushed": set()}
    return contacts


def read_events(path, contacts):
    events = []
    last = None
    for number, (ts, cid, kind, key, value) in read_csv(path, "ts,contact,type,key,value"):
        try:
            t = int(ts)
        except ValueError:
            raise InputError(f"{path}:{number}: ts {ts!r} is not an integer") from None
        if last is not None and t < last:
            raise InputError(f"{path}:{number}: ts {t} is before the previous line's {last}")
        if cid not in contacts:
            raise InputError(f"{path}:{number}: unknown contact {cid!r}")
        if kind not in TYPES:
            raise InputError(f"{path}:{number}: unknown event type {kind!r}")
        last = t
        events.append((t, cid, kind, key))
    return events


def filler_index(key, k):
    """i if key is /p/<i> (i written as an integer, no sign or leading zero) with i < k."""
    digits = key[3:] if key.startswith("/p/") else ""
    if not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        return None
    i = int(digits)
    return i if i < k else None


def run(contacts, events, k):
    """Returns the action rows (ts, contact, rule, action, arg), sorted as the output is."""
    rows = []
    timers = []  # heap of (due, sequence, contact, kind, start): sequence = scheduling order
    sequence = 0

    def schedule(due, cid, kind, start):
        nonlocal sequence
        heapq.heappush(timers, (due, sequence, cid, kind, start))
        sequence += 1

    def fire(due, cid, kind, start):
        c = contacts[cid]
        if kind == "winback":
            if not any(due - 60 * DAY < p <= due for p in c["purchases"]):
                rows.append((due, cid, "winback", "send_email", "winback"))
        elif kind == "abandoned_cart":
            if (not any(due - HOUR < p <= due for p in c["purchases"])
                    and not any(due - DAY < r <= due for r in c["reminders"])):
                c["reminders"].append(due)
                rows.append((due, cid, "abandoned_cart", "send_email", "cart_reminder"))
        elif kind == "welcome_2":
            rows.append((due, cid, "welcome", "send_email", "welcome_2"))
        elif kind == "welcome_3":
            if any(start < o <= start + 14 * DAY for o in c["opens"]):
                rows.append((due, cid, "welcome", "send_email", "welcome_3"))

    def fire_until(limit, inclusive):
        while timers and (timers[0][0] <= limit if inclusive else timers[0][0] < limit):
            due, _, cid, kind, start = heapq.heappop(timers)
            fire(due, cid, kind, start)

    for t, cid, kind, key in events:
        # Timers due before t fire first; those due at t wait for every event stamped t.
        fire_until(t, inclusive=False)
        c = contacts[cid]
        # What the event records, before the rules look (a window (x, c] includes this event).
        if kind == "purchase":
            c["purchases"].append(t)
            c["purchase_count"] += 1
            c["status"] = "customer"  # R7
            schedule(t + 60 * DAY, cid, "winback", t)  # R1
            if c["purchase_count"] == 5:  # R5
                rows.append((t, cid, "loyalty", "send_sms", "loyalty"))
        elif kind == "email_open":
            c["opens"].append(t)
        elif kind == "cart":
            schedule(t + HOUR, cid, "abandoned_cart", t)  # R2
        elif kind == "tag_added":
            if key == MEN and c["status"] == "customer":  # R3
                rows.append((t, cid, "coupon", "generate_coupon", "coupon"))
                rows.append((t, cid, "coupon", "send_email", "coupon"))
        elif kind == "page_view":
            if key == "/pricing" and c["company"] and c["owner"] is None:  # R4
                c["owner"] = OWNERS[fnv1a64(cid.encode()) % 3]
                rows.append((t, cid, "lead_assign", "assign_owner", c["owner"]))
            i = filler_index(key, k)
            if i is not None and i not in c["pushed"]:
                c["pushed"].add(i)
                rows.append((t, cid, f"interest_{i}", "web_push", f"p{i}"))
        elif kind == "signup":  # R6
            rows.append((t, cid, "welcome", "send_email", "welcome_1"))
            schedule(t + 2 * DAY, cid, "welcome_2", t)
            schedule(t + 14 * DAY, cid, "welcome_3", t)
    if events:
        fire_until(events[-1][0] + 90 * DAY, inclusive=True)
    rows.sort(key=lambda r: (r[0], r[1].encode()))  # stable: emission order within a tie
    return rows


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contacts", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--filler", type=int, default=100, metavar="K")
    ap.add_argument("--out", help="output file (default: standard output)")
    a = ap.parse_args(argv)
    try:
        contacts = read_contacts(a.contacts)
        rows = run(contacts, read_events(a.events, contacts), a.filler)
    except (InputError, OSError) as e:
        print(e, file=sys.stderr)
        return 1
    text = "ts,contact,rule,action,arg\n" + "".join(
        f"{t},{c},{rule},{action},{arg}\n" for t, c, rule, action, arg in rows)
    if a.out:
        with open(a.out, "w", newline="") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
