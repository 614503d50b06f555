#!/usr/bin/python3
"""Generates workload W1 input data (contacts.csv, events.csv), the project's own.

    /usr/bin/python3 tests/support/gen_w1.py [--contacts 1000] [--events 20000] [--days 90]
        [--seed 1] --out DIR [--quiet]

The project's own generator, written from the W1 spec (its rules are restated in
tests/support/w1_reference.py) for the tests and the benchmarks: a clone needs nothing beside it.
Standard library only, and deterministic: the same arguments give byte-identical files
(random.Random(seed) is the only source of choices; no clock, no hash order, no environment).
Exactly --contacts contacts and --events events are written, every ts in [START, START + days),
START = 2024-01-01T00:00:00Z, sorted by ts (ties keep the order in which they were made).

The data are a shop's, shaped so that every edge of the W1 rules occurs in a small set (the spec's
clock and tie rules are where two engines disagree, so the data aim at them):
  * purchases: repeat purchases exactly 60 d after the last, 60 d - 1 s and 60 d + 1 s (R1's
    window (c - 60d, c] at its boundary), runs of 4 to 7 purchases (R5's fifth);
  * carts: a purchase exactly 1 h after the cart, 1 h - 1 s and 1 h + 1 s (R2's window), none at
    all, and a second cart 24 h, 24 h - 1 s, 24 h + 1 s or a few hours after the first (R2's cap
    of one reminder in (c - 24h, c]);
  * the tag ZAKUPY-W-SEKCJI-MESKIEJ in the same second as a purchase, before it and after it (R3
    sees the status the purchase sets only after it), and by contacts who never buy;
  * /pricing views by contacts with and without a company, more than once (R4);
  * signups with opens at t (outside (t, t + 14d]), t + 14 d exactly, t + 14 d + 1 s, in between,
    or none (R6's welcome_3);
  * page views on /, /cart, /pricing and /p/<i> for i in [0, 200), popular ids on both sides of
    any K, repeated (the filler rules fire once per contact);
  * episodes start on whole minutes, so events of different contacts share seconds (the output
    sort by (ts, contact) is exercised).
Activity per contact is skewed (lognormal weights): a few contacts hold many events.
"""
import argparse
import math
import os
import random
import sys

START = 1704067200  # 2024-01-01T00:00:00Z
HOUR = 3600
DAY = 86400
COMPANIES = ["Nordpol", "Acme", "Bytewise", "Kolibri", "Vistula", "Carpathia", "Lumen", "Orbita",
             "Tatra", "Delta"]
LANGUAGES = [("pl", 60), ("en", 28), ("ro", 12)]
MEN = "ZAKUPY-W-SEKCJI-MESKIEJ"
OTHER_TAGS = ["ZAKUPY-W-SEKCJI-DAMSKIEJ", "VIP", "NEWSLETTER", "PROMO-SMS"]
CAMPAIGNS = ["welcome_1", "welcome_2", "newsletter", "winback", "cart_reminder", "coupon"]
PRODUCTS = 200


class Shop:
    """Makes episodes of events for one contact at a time; `events` collects (ts, row) pairs."""

    def __init__(self, rng, days):
        self.rng = rng
        self.end = START + days * DAY
        self.events = []
        self.order = 0
        # Product popularity: weight 1 / rank over a seeded shuffle of the ids, so the popular
        # products are spread over [0, 200) and urls beyond a small K hit no filler rule.
        ids = list(range(PRODUCTS))
        rng.shuffle(ids)
        self.products = ids
        weights = [1.0 / (rank + 1) for rank in range(PRODUCTS)]
        total = 0.0
        self.product_cum = []
        for w in weights:
            total += w
            self.product_cum.append(total)

    def add(self, ts, contact, kind, key="", value=""):
        """Adds one event; events outside the window are dropped (an episode near the end is
        cut short, as real data would be)."""
        if START <= ts < self.end:
            self.events.append((ts, self.order, f"{ts},{contact},{kind},{key},{value}\n"))
            self.order += 1

    def product(self):
        return self.rng.choices(self.products, cum_weights=self.product_cum)[0]

    def amount(self):
        return f"{max(5.0, self.rng.lognormvariate(math.log(90), 0.7)):.2f}"

    def order_id(self):
        return f"o{self.rng.randrange(10**8):08d}"

    def start(self):
        """An episode's start: a whole minute in the window, so that contacts share seconds."""
        return START + self.rng.randrange(max(1, (self.end - START) // 60)) * 60

    # ---- episodes ---------------------------------------------------------------------------

    def browse(self, c, t):
        """1..6 page views a few seconds apart; product pages mostly."""
        rng = self.rng
        for _ in range(1 + min(5, int(rng.expovariate(0.6)))):
            r = rng.random()
            if r < 0.08:
                url = "/pricing"
            elif r < 0.2:
                url = "/"
            elif r < 0.24:
                url = "/cart"
            else:
                url = f"/p/{self.product()}"
            self.add(t, c, "page_view", url)
            t += rng.choice([0, 1, 5, 17, 40, 95])

    def cart(self, c, t):
        """A product page, a cart, then one of R2's cases."""
        rng = self.rng
        p = self.product()
        self.add(t, c, "page_view", f"/p/{p}")
        t += rng.randint(0, 30)
        self.add(t, c, "cart", f"sku{p}")
        r = rng.random()
        if r < 0.36:
            # Bought near the check at t + 1h: at it, a second before or a second after.
            after = HOUR + rng.choice([-1, 0, 1, -600, 600])
            self.add(t + after - rng.choice([0, 30]), c, "page_view", "/cart")
            self.add(t + after, c, "purchase", self.order_id(), self.amount())
        elif r < 0.62:
            # A second cart around 24 h later: R2's cap counts reminders in (c - 24h, c].
            again = rng.choice([DAY, DAY - 1, DAY + 1, 3 * HOUR, 20 * HOUR, 2 * DAY])
            self.add(t + again, c, "cart", f"sku{self.product()}")
            if rng.random() < 0.3:
                self.add(t + again + rng.choice([HOUR, HOUR + 1, 20 * 60]), c, "purchase",
                         self.order_id(), self.amount())
        elif r < 0.7:
            # Two carts within the hour: two checks, at most one reminder.
            self.add(t + rng.randint(60, HOUR - 1), c, "cart", f"sku{self.product()}")
        # otherwise: abandoned

    def purchase(self, c, t):
        """A purchase, with or without the men's-section tag in the same second, and maybe a
        repeat purchase at R1's 60-day boundary."""
        rng = self.rng
        r = rng.random()
        if r < 0.15:
            self.add(t, c, "tag_added", MEN)  # before the purchase: the status is still the old
        self.add(t, c, "purchase", self.order_id(), self.amount())
        if 0.15 <= r < 0.45:
            self.add(t, c, "tag_added", MEN)  # after it, same second: a customer now
        elif 0.45 <= r < 0.55:
            self.add(t + rng.randint(1, 600), c, "tag_added", MEN)
        elif 0.55 <= r < 0.62:
            self.add(t + rng.randint(0, 600), c, "tag_added", rng.choice(OTHER_TAGS))
        if rng.random() < 0.35:
            back = 60 * DAY + rng.choice([0, 0, -1, 1, -DAY, 3 * DAY])
            self.add(t + back, c, "purchase", self.order_id(), self.amount())

    def buyer(self, c, t):
        """4..7 purchases days apart: R5's fifth purchase, and many winback checks."""
        rng = self.rng
        for _ in range(rng.randint(4, 7)):
            self.add(t, c, "purchase", self.order_id(), self.amount())
            t += rng.choice([rng.randint(1, 20) * DAY, rng.randint(60, 7200)])

    def pricing(self, c, t):
        """A /pricing view (R4), sometimes twice (the owner is set once)."""
        self.add(t, c, "page_view", "/")
        self.add(t + 7, c, "page_view", "/pricing")
        if self.rng.random() < 0.3:
            self.add(t + self.rng.randint(60, 10 * DAY), c, "page_view", "/pricing")

    def signup(self, c, t):
        """A signup and opens around R6's window (t, t + 14d]."""
        rng = self.rng
        self.add(t, c, "signup")
        r = rng.random()
        if r < 0.15:
            self.add(t, c, "email_open", "welcome_1")  # same second: not after t
        elif r < 0.3:
            self.add(t + 14 * DAY, c, "email_open", "welcome_2")  # the last second of the window
        elif r < 0.4:
            self.add(t + 14 * DAY + 1, c, "email_open", "welcome_2")  # just outside
        elif r < 0.75:
            for _ in range(rng.randint(1, 3)):
                self.add(t + rng.randint(1, 14 * DAY - 1), c, "email_open", rng.choice(CAMPAIGNS))
        # otherwise: no open
        if rng.random() < 0.3:
            self.browse(c, t + rng.randint(1, 2 * DAY))

    def tag(self, c, t):
        """A tag without a purchase (R3 fires only for customers)."""
        rng = self.rng
        self.add(t, c, "tag_added", MEN if rng.random() < 0.5 else rng.choice(OTHER_TAGS))

    def opens(self, c, t):
        self.add(t, c, "email_open", self.rng.choice(CAMPAIGNS))


EPISODES = [("browse", 46), ("cart", 18), ("purchase", 10), ("buyer", 2), ("pricing", 7),
            ("signup", 7), ("tag", 4), ("opens", 6)]


def contact_rows(rng, ids):
    """One contacts.csv row per id (status, company, language drawn from rng), in order."""
    languages = [l for l, _ in LANGUAGES]
    language_weights = [w for _, w in LANGUAGES]
    for cid in ids:
        status = "customer" if rng.random() < 0.12 else "lead"
        company = rng.choice(COMPANIES) if rng.random() < 0.3 else ""
        language = rng.choices(languages, weights=language_weights)[0]
        yield f"{cid},{status},{company},{language}\n"


def make_events(rng, ids, shop, made):
    """Runs episodes on `shop` until made() reaches the wanted count: skewed activity (a
    lognormal weight per contact), episode kinds by EPISODES' weights."""
    cum = []
    total = 0.0
    for _ in ids:
        total += rng.lognormvariate(0, 1.3)
        cum.append(total)
    names = [n for n, _ in EPISODES]
    episode_cum = []
    acc = 0
    for _, w in EPISODES:
        acc += w
        episode_cum.append(acc)
    while not made():
        c = rng.choices(ids, cum_weights=cum)[0]
        kind = rng.choices(names, cum_weights=episode_cum)[0]
        getattr(shop, kind)(c, shop.start())


def generate(contacts, events, days, seed):
    """Returns (contacts.csv text, events.csv text)."""
    rng = random.Random(seed)
    ids = [f"c{i:07d}" for i in range(1, contacts + 1)]
    contact_lines = ["contact,status,company,language\n", *contact_rows(rng, ids)]
    shop = Shop(rng, days)
    event_lines = ["ts,contact,type,key,value\n"]
    if contacts > 0 and events > 0:
        make_events(rng, ids, shop, lambda: len(shop.events) >= events)
        made = shop.events[:events]
        made.sort(key=lambda e: (e[0], e[1]))
        event_lines += [row for _, _, row in made]
    return "".join(contact_lines), "".join(event_lines)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contacts", type=int, default=1000)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="directory for contacts.csv and events.csv")
    ap.add_argument("--quiet", action="store_true", help="print nothing")
    a = ap.parse_args(argv)
    if not 0 <= a.contacts <= 9_999_999:
        ap.error("--contacts must be in [0, 9999999]")
    if a.events < 0 or a.days < 1:
        ap.error("--events must be >= 0 and --days >= 1")
    if a.events > 0 and a.contacts == 0:
        ap.error("events need at least one contact")
    contacts, events = generate(a.contacts, a.events, a.days, a.seed)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "contacts.csv"), "w", newline="") as f:
        f.write(contacts)
    with open(os.path.join(a.out, "events.csv"), "w", newline="") as f:
        f.write(events)
    if not a.quiet:
        print(f"{a.out}: {a.contacts} contacts, {a.events} events over {a.days} days "
              f"(seed {a.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
