"""The W1 test data and oracle (tests/support): the generator is deterministic and produces the
cases the W1 rules turn on, and the oracle applies the spec's tie rules as written. The W1 CLI
tests (tests/cli/w1_small.sh ...) compare nudge with the oracle on this data, so both must hold
for those comparisons to mean anything."""
import collections
import os
import subprocess
import sys

import pytest

from conftest import DAY, HOUR, ROOT, T0

SUPPORT = ROOT / "tests" / "support"


def generate(out, *args):
    subprocess.run([sys.executable, str(SUPPORT / "gen_w1.py"), "--quiet", "--out", str(out),
                    *args], check=True)
    return (out / "contacts.csv").read_bytes(), (out / "events.csv").read_bytes()


def oracle(contacts, events, k=100):
    return subprocess.run([sys.executable, str(SUPPORT / "w1_reference.py"), "--contacts",
                           str(contacts), "--events", str(events), "--filler", str(k)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("w1")
    generate(out)
    contacts = [line.split(",") for line in (out / "contacts.csv").read_text().splitlines()[1:]]
    events = [line.split(",") for line in (out / "events.csv").read_text().splitlines()[1:]]
    return {"dir": out, "contacts": contacts,
            "events": [(int(ts), c, kind, key, value) for ts, c, kind, key, value in events]}


def test_generator_is_deterministic_and_exact(tmp_path):
    a = generate(tmp_path / "a", "--contacts", "50", "--events", "700", "--seed", "3")
    b = generate(tmp_path / "b", "--contacts", "50", "--events", "700", "--seed", "3")
    c = generate(tmp_path / "c", "--contacts", "50", "--events", "700", "--seed", "4")
    assert a == b and a[1] != c[1]
    assert a[0].count(b"\n") == 51 and a[1].count(b"\n") == 701
    assert a[0].startswith(b"contact,status,company,language\n")
    assert a[1].startswith(b"ts,contact,type,key,value\n")


def test_generator_defaults_are_w1_small_in_w1_formats(small):
    assert len(small["contacts"]) == 1000 and len(small["events"]) == 20000
    ids = {c[0] for c in small["contacts"]}
    assert all(len(c) == 4 and c[0][0] == "c" and len(c[0]) == 8 and c[1] in ("lead", "customer")
               and (c[2] == "" or c[2].isalpha()) and c[3] in ("pl", "en", "ro")
               for c in small["contacts"])
    times = [e[0] for e in small["events"]]
    assert times == sorted(times) and T0 <= times[0] and times[-1] < T0 + 90 * DAY
    assert {e[1] for e in small["events"]} <= ids
    assert {e[2] for e in small["events"]} == {"page_view", "cart", "purchase", "email_open",
                                               "tag_added", "signup"}
    for ts, _, kind, key, value in small["events"]:
        if kind == "purchase":
            assert key and value.count(".") == 1 and len(value.split(".")[1]) == 2
        else:
            assert value == ""
        if kind == "signup":
            assert key == ""


def test_generator_makes_the_cases_the_rules_turn_on(small):
    by_contact = collections.defaultdict(list)
    for ts, c, kind, key, _ in small["events"]:
        by_contact[c].append((ts, kind, key))
    company = {c[0]: c[2] for c in small["contacts"]}
    found = collections.Counter()
    for c, evs in by_contact.items():
        purchases = [t for t, k, _ in evs if k == "purchase"]
        carts = [t for t, k, _ in evs if k == "cart"]
        signups = [t for t, k, _ in evs if k == "signup"]
        opens = [t for t, k, _ in evs if k == "email_open"]
        for p in purchases:
            for d in (-1, 0, 1):
                found[f"purchase 60d{d:+}"] += (p + 60 * DAY + d) in purchases
        for cart in carts:
            for d in (-1, 0, 1):
                found[f"purchase 1h{d:+} after a cart"] += (cart + HOUR + d) in purchases
                found[f"cart 24h{d:+} after a cart"] += (cart + DAY + d) in carts
        for s in signups:
            found["open at signup"] += s in opens
            found["open at signup + 14d"] += (s + 14 * DAY) in opens
            found["open at signup + 14d + 1s"] += (s + 14 * DAY + 1) in opens
        for i, (t, kind, key) in enumerate(evs):
            if kind == "tag_added" and key == "ZAKUPY-W-SEKCJI-MESKIEJ":
                same = [k for tt, k, _ in evs if tt == t]
                if "purchase" in same:
                    before = any(k == "purchase" for tt, k, _ in evs[:i] if tt == t)
                    found["tag after a purchase, same second" if before
                          else "tag before a purchase, same second"] += 1
            if kind == "page_view" and key == "/pricing":
                found["/pricing with a company" if company[c] else "/pricing without"] += 1
        found["5 purchases or more"] += len(purchases) >= 5
    ts_contacts = collections.defaultdict(set)
    for ts, c, *_ in small["events"]:
        ts_contacts[ts].add(c)
    found["two contacts in one second"] = sum(len(s) > 1 for s in ts_contacts.values())
    products = {int(e[3][3:]) for e in small["events"] if e[3].startswith("/p/")}
    assert min(products) == 0 and max(products) == 199 and len(products) > 150
    missing = [name for name in (
        "purchase 60d-1", "purchase 60d+0", "purchase 60d+1", "purchase 1h-1 after a cart",
        "purchase 1h+0 after a cart", "purchase 1h+1 after a cart", "cart 24h-1 after a cart",
        "cart 24h+0 after a cart", "cart 24h+1 after a cart", "open at signup",
        "open at signup + 14d", "open at signup + 14d + 1s", "tag after a purchase, same second",
        "tag before a purchase, same second", "/pricing with a company", "/pricing without",
        "5 purchases or more", "two contacts in one second") if found[name] == 0]
    assert missing == []


def test_oracle_applies_the_tie_rules(tmp_path):
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("contact,status,company,language\nc0000002,lead,Acme,pl\n"
                        "c0000001,lead,,en\n")
    t = T0
    rows = [
        (t, "c0000002", "cart", "sku1", ""),
        (t, "c0000002", "tag_added", "ZAKUPY-W-SEKCJI-MESKIEJ", ""),  # a lead still: no coupon
        (t, "c0000002", "purchase", "o1", "10.00"),
        (t, "c0000002", "tag_added", "ZAKUPY-W-SEKCJI-MESKIEJ", ""),  # a customer now
        (t, "c0000001", "page_view", "/pricing", ""),  # no company: no owner
        (t + 1, "c0000002", "page_view", "/pricing", ""),
        (t + 1, "c0000002", "page_view", "/pricing", ""),  # the owner is set once
        (t + 2, "c0000001", "signup", "", ""),
        (t + 2, "c0000001", "email_open", "welcome_1", ""),  # at t: not in (t, t + 14d]
        (t + 3, "c0000001", "page_view", "/p/3", ""),
        (t + 3, "c0000001", "page_view", "/p/3", ""),  # once ever
        (t + 3, "c0000001", "page_view", "/p/03", ""),  # not /p/3
        (t + 3, "c0000001", "page_view", "/p/7", ""),  # K = 7: no interest_7
        # The cart at t: the purchase at t is not in (t, t + 1h]: a reminder at t + 1h.
        (t + HOUR, "c0000002", "cart", "sku2", ""),  # at t + 2h: one at t + 1h, capped
        (t + DAY + HOUR, "c0000002", "cart", "sku3", ""),  # t + 1h is out of the 24 h: sent
        (t + DAY + HOUR + 1, "c0000002", "cart", "sku4", ""),  # one sent 1 s before: capped
        (t + 60 * DAY, "c0000002", "purchase", "o2", "10.00"),  # at the winback check: none
    ]
    events = tmp_path / "events.csv"
    events.write_text("ts,contact,type,key,value\n" +
                      "".join(",".join(map(str, r)) + "\n" for r in rows))
    result = oracle(contacts, events, k=7)
    assert result.returncode == 0, result.stderr
    h = 14695981039346656037  # FNV-1a 64 of the id, as the spec defines it
    for b in b"c0000002":
        h = ((h ^ b) * 1099511628211) % 2**64
    owner = ["anna", "bartek", "celina"][h % 3]
    assert result.stdout.splitlines() == [
        "ts,contact,rule,action,arg",
        f"{t},c0000002,coupon,generate_coupon,coupon",
        f"{t},c0000002,coupon,send_email,coupon",
        f"{t + 1},c0000002,lead_assign,assign_owner,{owner}",
        f"{t + 2},c0000001,welcome,send_email,welcome_1",
        f"{t + 3},c0000001,interest_3,web_push,p3",
        f"{t + HOUR},c0000002,abandoned_cart,send_email,cart_reminder",
        f"{t + DAY + 2 * HOUR},c0000002,abandoned_cart,send_email,cart_reminder",
        f"{t + 2 + 2 * DAY},c0000001,welcome,send_email,welcome_2",
        # No welcome_3 (the open is not after the signup); the winback check at t + 60d sees
        # the purchase stamped then; the one at t + 120d sees none.
        f"{t + 120 * DAY},c0000002,winback,send_email,winback",
    ]
    # And nudge agrees (the CLI tests compare the two on generated data).
    cli = os.environ.get("NUDGE_CLI")
    if cli:
        rules = tmp_path / "rules.json"
        rules.write_bytes(subprocess.run(
            [sys.executable, str(ROOT / "examples" / "w1" / "make_rules.py"), "--filler", "7"],
            check=True, capture_output=True).stdout)
        replay = subprocess.run([cli, "replay", "--rules", str(rules), "--contacts",
                                 str(contacts), "--events", str(events), "--time-format",
                                 "epoch"], check=True, capture_output=True, text=True)
        assert replay.stdout == result.stdout


def test_oracle_names_file_and_line_of_bad_input(tmp_path):
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("contact,status,company,language\nc0000001,lead,,en\n")
    events = tmp_path / "events.csv"
    events.write_text("ts,contact,type,key,value\n5,c0000001,signup,,\n4,c0000001,signup,,\n")
    result = oracle(contacts, events)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"{events}:3: ts 4 is before the previous line's 5\n"
    events.write_text("ts,contact,type,key,value\n5,c0000009,signup,,\n")
    assert oracle(contacts, events).stderr == f"{events}:2: unknown contact 'c0000009'\n"
