#!/usr/bin/env python3
"""Prints workload W1 (its rules: tests/support/w1_reference.py) as a nudge rule file.

    python3 examples/w1/make_rules.py --filler 100 > rules.json

Seven shop rules, in the order the spec fixes (R7 first, so that a purchase makes the contact a
customer before any other rule reacts to it), then K filler rules interest_0 .. interest_<K-1>.
Standard library only; the same arguments always print the same bytes.
"""
import argparse
import json
import sys


def shop_rules():
    return [
        # R7: internal, emits nothing; first so that R3 sees the new status.
        {"id": "become_customer", "on": {"event": "purchase"},
         "then": [{"do": "set_status", "arg": "customer"}]},
        # R1: the check at t+60d looks for a purchase in (c-60d, c].
        {"id": "winback", "on": {"event": "purchase"}, "delay": "60d",
         "if": {"not_happened": {"event": "purchase", "within": "60d"}},
         "then": [{"do": "send_email", "arg": "winback"}]},
        # R2: at most one reminder per contact in any 24 h.
        {"id": "abandoned_cart", "on": {"event": "cart"}, "delay": "1h",
         "if": {"not_happened": {"event": "purchase", "within": "1h"}},
         "cap": {"max": 1, "per": "24h"},
         "then": [{"do": "send_email", "arg": "cart_reminder"}]},
        # R3
        {"id": "coupon", "on": {"tag_added": "ZAKUPY-W-SEKCJI-MESKIEJ"},
         "if": {"status": "customer"},
         "then": [{"do": "generate_coupon", "arg": "coupon"},
                  {"do": "send_email", "arg": "coupon"}]},
        # R4: owner by fnv1a64(contact id) % 3; notify so the pick appears in the output.
        {"id": "lead_assign", "on": {"event": "page_view", "key": "/pricing"},
         "if": {"all": [{"detail": "company", "exists": True},
                        {"field": "owner", "exists": False}]},
         "then": [{"do": "assign_owner", "arg": "sales", "pick": "hash", "notify": True}]},
        # R5: the lifetime count includes the purchase being handled.
        {"id": "loyalty", "on": {"event": "purchase"},
         "if": {"happened": {"event": "purchase", "exactly": 5}},
         "then": [{"do": "send_sms", "arg": "loyalty"}]},
        # R6: a drip; the third mail only if an e-mail was opened in (t, t+14d].
        {"id": "welcome", "on": {"event": "signup"},
         "then": [{"do": "send_email", "arg": "welcome_1"},
                  {"do": "send_email", "arg": "welcome_2", "delay": "2d"},
                  {"do": "send_email", "arg": "welcome_3", "delay": "14d",
                   "if": {"happened": {"event": "email_open", "since_trigger": True}}}]},
    ]


def filler_rules(k):
    return [{"id": f"interest_{i}", "on": {"event": "page_view", "key": f"/p/{i}"},
             "reentry": "once", "then": [{"do": "web_push", "arg": f"p{i}"}]}
            for i in range(k)]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filler", type=int, default=100, metavar="K",
                        help="number of filler rules interest_<i> (default 100)")
    args = parser.parse_args(argv)
    if args.filler < 0:
        parser.error("--filler must be >= 0")
    # One rule per line: short enough to read, and error positions (line:column) stay useful.
    rules = shop_rules() + filler_rules(args.filler)
    out = ['{"version": 1,',
           ' "owner_groups": ' + json.dumps({"sales": ["anna", "bartek", "celina"]}) + ',',
           ' "rules": [']
    out += ["  " + json.dumps(r) + ("," if i + 1 < len(rules) else "") for i, r in enumerate(rules)]
    out += [" ]", "}"]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
