#!/usr/bin/env python3
"""Adds workflows and segments to a W1 rule file, for the workflow benchmark (bench/README.md).

    python3 examples/w1/make_rules.py --filler 100 > rules_k100.json
    python3 bench/make_workflow_rules.py rules_k100.json --workflows 50 --segments 20 \\
        > rules_k100_wf50_seg20.json

The W1 rules (and owner groups) are copied unchanged; the script adds N workflows and M segments
over what the W1 data holds (tests/support/gen_w1.py): event types page_view (keys "/",
"/cart", "/pricing", "/p/<n>"), cart (key: a SKU "sku<n>"), purchase (key: an order id, property
"value": the order value), signup, email_open (keys such as "welcome_1"), tag_added (tags
ZAKUPY-W-SEKCJI-MESKIEJ / -DAMSKIEJ, VIP, NEWSLETTER, PROMO-SMS); contact details company and
language; status lead / customer.

Workflows cycle through ten seed kinds (abandoned cart with a purchase goal, welcome series with
open-conditioned steps, reactivation after inactivity, best customer by purchase count or value in
a window, replenishment, browse abandonment, lead nurture, segment-entered follow-ups, first
purchase feedback, upsell); workflow i is of kind i % 10 and, as a shop running several journeys
of one kind would, targets one audience (language x B2B / B2C, disjoint in the W1 contacts) so the
five instances of a kind do not all message everybody (--broad: no audiences, a stress case).
Segments cycle through ten kinds (windowed counts, sums and averages of the purchase "value",
no purchase for N days, open carts, new visitors, last purchase long ago, tag and detail
conditions, an earlier segment combined with a window). Each instance draws its waits (hours to
weeks), thresholds, keys, branches and splits from random.Random(--seed), so the same arguments
always print the same bytes.

So that W1's own actions stay exactly what W1 alone emits, the added workflows never touch what a
W1 rule reads: no set_status (R3 reads the status), no assign_owner (R4 reads the owner), no
set_detail of "company" (R4), and no tag W1 reacts to (R3: ZAKUPY-W-SEKCJI-MESKIEJ); their ids are
prefixed "wf_" and the segments' "seg_", so they cannot clash with a W1 rule id.
Standard library only.
"""
import argparse
import json
import random
import sys

DAY = 86400


def dur(seconds):
    """The shortest exact DURATION string for a number of seconds."""
    for unit, size in (("w", 7 * DAY), ("d", DAY), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def days(n):
    return dur(n * DAY)


def hours(n):
    return dur(n * 3600)


# Frequent SKUs in carts and product pages of the W1 data (a Zipf-like popularity).
SKUS = [51, 94, 55, 35, 170, 12, 7, 3, 120, 88]
# Tags present in the data that no W1 rule reacts to.
DATA_TAGS = ["VIP", "NEWSLETTER", "PROMO-SMS", "ZAKUPY-W-SEKCJI-DAMSKIEJ"]


# ---------------------------------------------------------------- segments

def segment(i, rng, names):
    """Segment number i; may name segments defined before it (names)."""
    kind = i % 10
    if kind == 0:  # engaged visitors: N page views in a window
        w, n = rng.choice([7, 14, 30]), rng.choice([3, 5, 10, 20])
        cond = {"happened": {"event": "page_view", "within": days(w), "at_least": n}}
        name = f"seg_{i}_views_{n}_in_{w}d"
    elif kind == 1:  # spent at least X in a window (sum of the purchase value)
        w, x = rng.choice([30, 90, 365]), rng.choice([200, 500, 1000])
        cond = {"sum": {"event": "purchase", "property": "value", "within": days(w), "ge": x}}
        name = f"seg_{i}_spent_{x}_in_{w}d"
    elif kind == 2:  # lapsed customers: bought once, not in the last N days
        n = rng.choice([30, 60, 90])
        cond = {"all": [{"happened": {"event": "purchase"}},
                        {"not_happened": {"event": "purchase", "within": days(n)}}]}
        name = f"seg_{i}_no_purchase_{n}d"
    elif kind == 3:  # open carts: a cart in the window and no purchase in it
        w = rng.choice([1, 3, 7])
        cond = {"all": [{"happened": {"event": "cart", "within": days(w)}},
                        {"not_happened": {"event": "purchase", "within": days(w)}}]}
        name = f"seg_{i}_open_cart_{w}d"
    elif kind == 4:  # tag and detail conditions
        tag, lang = rng.choice(DATA_TAGS), rng.choice(["pl", "en"])
        cond = {"all": [{"has_tag": tag}, {"detail": "language", "eq": lang}]}
        name = f"seg_{i}_tag_{tag.lower()}_{lang}"
    elif kind == 5:  # product interest: views of a product range in a window
        prefix = rng.choice(["/p/", "/p/1", "/p/2"])
        w, n = rng.choice([7, 14]), rng.choice([2, 3, 5])
        cond = {"happened": {"event": "page_view", "key_prefix": prefix,
                             "within": days(w), "at_least": n}}
        name = f"seg_{i}_interest_{prefix[3:] or 'all'}_{n}_in_{w}d"
    elif kind == 6:  # high average order value among B2B contacts
        w, x = rng.choice([90, 180]), rng.choice([150, 250, 400])
        cond = {"all": [{"detail": "company", "exists": True},
                        {"average": {"event": "purchase", "property": "value",
                                     "within": days(w), "gt": x}}]}
        name = f"seg_{i}_b2b_aov_{x}_{w}d"
    elif kind == 7:  # new visitors: first seen within N days
        w = rng.choice([3, 7, 14])
        cond = {"first_seen": {"event": "page_view", "within": days(w)}}
        name = f"seg_{i}_new_{w}d"
    elif kind == 8:  # last purchase long ago (customers only)
        w = rng.choice([45, 60, 120])
        cond = {"all": [{"status": "customer"},
                        {"last_seen": {"event": "purchase", "older_than": days(w)}}]}
        name = f"seg_{i}_last_purchase_over_{w}d"
    else:  # frequent buyers, or an earlier segment combined with pricing interest
        if names and rng.random() < 0.5:
            base = rng.choice(names)
            cond = {"all": [{"in_segment": base},
                            {"happened": {"event": "page_view", "key": "/pricing",
                                          "within": days(30)}}]}
            name = f"seg_{i}_pricing_and_{names.index(base)}"
        else:
            n, w = rng.choice([2, 3, 4]), rng.choice([30, 90])
            cond = {"happened": {"event": "purchase", "within": days(w), "at_least": n}}
            name = f"seg_{i}_buyers_{n}_in_{w}d"
    return {"name": name, "if": cond}


# ---------------------------------------------------------------- workflows

def send(sid, verb, arg, nxt=None):
    step = {"id": sid, "send": {"do": verb, "arg": arg}}
    if nxt:
        step["next"] = nxt
    return step


def wf_abandoned_cart(i, rng, segs):
    first = rng.choice([1, 2, 4])
    key = rng.choice([None, None, f"sku{rng.choice(SKUS)}"])
    on = {"event": "cart"} if key is None else {"event": "cart", "key": key}
    steps = [
        {"id": "wait_1", "wait": hours(first)},
        send("reminder_1", "send_email", f"cart_{i}_1"),
        {"id": "came_back", "wait_for": {"event": "page_view", "key": "/cart"},
         "within": days(rng.choice([1, 2])), "yes": "nudge_push", "no": "reminder_2"},
        send("nudge_push", "web_push", f"cart_{i}_push", "stop"),
        send("reminder_2", "send_email", f"cart_{i}_2"),
        {"id": "wait_3", "wait": days(rng.choice([2, 3]))},
        {"id": "b2b", "if": {"detail": "company", "exists": True}, "yes": "owner_mail",
         "no": "sms"},
        send("owner_mail", "notify_owner", f"cart_{i}_b2b", "stop"),
        send("sms", "send_sms", f"cart_{i}_3"),
        {"id": "stop", "end": True},
    ]
    return {"id": f"wf_{i}_abandoned_cart", "entry": {"on": on},
            "exit_on": [{"event": "purchase"}],
            "reentry": {"cool_down": hours(rng.choice([12, 24, 48]))}, "steps": steps}


def wf_welcome(i, rng, segs):
    steps = [
        send("s1", "send_email", f"welcome_{i}_1"),
        # Opens attributed to this step (key "wf_<i>_welcome/s1" or props) end the wait early.
        {"id": "w1", "wait": {"after": "opened", "plus": hours(rng.choice([12, 24])),
                              "timeout": days(3), "no": "opened_w1"}},
        send("s2", "send_email", f"welcome_{i}_2", "w2"),
        # W1's own welcome mails are opened in the data ("welcome_1"): branch on that open.
        {"id": "opened_w1", "if": {"happened": {"event": "email_open", "key": "welcome_1",
                                                "since_trigger": True}},
         "yes": "s2b", "no": "resend"},
        send("s2b", "send_email", f"welcome_{i}_2"),
        {"id": "w2", "wait": days(rng.choice([3, 5, 7]))},
        {"id": "engaged", "if": {"happened": {"event": "email_open", "since_trigger": True,
                                              "at_least": 2}},
         "yes": "s3", "no": "stop"},
        send("s3", "send_email", f"welcome_{i}_3", "stop"),
        {"id": "resend", "send": {"do": "send_email", "arg": f"welcome_{i}_1",
                                  "params": {"subject": "Did you miss this?"}}, "next": "stop"},
        {"id": "stop", "end": True},
    ]
    return {"id": f"wf_{i}_welcome", "entry": {"on": {"event": "signup"}},
            "exit_on": [{"event": "purchase"}], "reentry": "never",
            "on_complete": {"copy_to_group": f"onboarded_{i}"}, "steps": steps}


def wf_reactivation(i, rng, segs):
    quiet = rng.choice([30, 45, 60, 90])
    # Most reactivate on purchases; some on any activity (page views restart the clock).
    on = rng.choice([{"event": "purchase"}, {"event": "purchase"}, {"event": "page_view"}])
    steps = [
        {"id": "quiet", "wait": days(quiet)},
        send("miss_you", "send_email", f"reactivate_{i}_1"),
        {"id": "wait_open", "wait_for": {"event": "email_open"}, "within": days(7),
         "yes": "offer", "no": "sms"},
        send("offer", "generate_coupon", f"comeback_{i}", "stop"),
        send("sms", "send_sms", f"reactivate_{i}_2"),
        {"id": "wait_2w", "wait": days(14)},
        {"id": "dormant", "act": {"do": "set_stage", "arg": "dormant"}},
        {"id": "stop", "end": True},
    ]
    return {"id": f"wf_{i}_reactivation", "entry": {"on": on}, "exit_on": [on],
            "steps": steps}


def wf_best_customer(i, rng, segs):
    if rng.random() < 0.5:
        n = rng.choice([3, 4, 5])
        cond = {"happened": {"event": "purchase", "within": days(365), "at_least": n}}
    else:
        x = rng.choice([500, 1000, 2000])
        cond = {"sum": {"event": "purchase", "property": "value", "within": days(365), "ge": x}}
    steps = [
        {"id": "tag", "act": {"do": "add_tag", "arg": f"best_{i}"}},
        {"id": "score", "act": {"do": "add_score", "value": rng.choice([10, 25, 50])}},
        {"id": "ab", "split": [{"percent": 50, "next": "mail"}, {"percent": 50, "next": "sms"}]},
        send("mail", "send_email", f"vip_{i}", "group"),
        send("sms", "send_sms", f"vip_{i}"),
        {"id": "group", "act": {"do": "add_to_group", "arg": f"vip_{i}"}},
    ]
    return {"id": f"wf_{i}_best_customer", "entry": {"on": {"event": "purchase"}, "if": cond},
            "reentry": "never", "on_complete": {"copy_to_group": f"best_{i}"}, "steps": steps}


def wf_replenishment(i, rng, segs):
    sku = f"sku{rng.choice(SKUS)}"
    lasts = rng.choice([14, 21, 30, 45])
    # Purchases carry an order id, not a product: "bought sku" = carted it within a day before.
    steps = [
        {"id": "wait_use", "wait": days(lasts - 5)},
        send("reorder", "send_email", f"reorder_{i}_{sku}"),
        {"id": "wait_week", "wait": days(7)},
        {"id": "still", "if": {"not_happened": {"event": "purchase", "since_trigger": True}},
         "yes": "last", "no": "stop"},
        send("last", "send_sms", f"reorder_{i}_{sku}_last"),
        {"id": "stop", "end": True},
    ]
    return {"id": f"wf_{i}_replenishment",
            "entry": {"on": {"event": "purchase"},
                      "if": {"happened": {"event": "cart", "key": sku, "within": days(1)}}},
            "exit_on": [{"event": "cart", "key": sku}], "steps": steps}


def wf_browse(i, rng, segs):
    lo = rng.choice([0, 1, 2])
    prefix = f"/p/{lo}" if lo else "/p/"
    steps = [
        {"id": "wait", "wait": hours(rng.choice([2, 6, 24]))},
        {"id": "bought", "if": {"any": [{"happened": {"event": "purchase", "since_trigger": True}},
                                        {"happened": {"event": "cart", "since_trigger": True}}]},
         "yes": "stop", "no": "push"},
        send("push", "web_push", f"browse_{i}"),
        {"id": "stop", "end": True},
    ]
    return {"id": f"wf_{i}_browse_abandon",
            "entry": {"on": {"event": "page_view", "key_prefix": prefix}},
            "exit_on": [{"event": "cart"}, {"event": "purchase"}],
            "reentry": {"cool_down": days(rng.choice([3, 7]))}, "steps": steps}


def wf_lead_nurture(i, rng, segs):
    steps = [
        {"id": "score", "act": {"do": "add_score", "value": 5}},
        {"id": "wait", "wait": days(rng.choice([1, 2]))},
        {"id": "office", "wait": {"until_time": "09:00",
                                  "weekdays": ["mon", "tue", "wed", "thu", "fri"]}},
        send("case_study", "send_email", f"case_study_{i}"),
        {"id": "demo", "wait_for": {"event": "page_view", "key": "/pricing"},
         "within": days(7), "yes": "hot", "no": "stop"},
        {"id": "hot", "act": {"do": "add_tag", "arg": f"hot_lead_{i}"}},
        send("call", "notify_owner", f"call_lead_{i}"),
        {"id": "stop", "end": True},
    ]
    return {"id": f"wf_{i}_lead_nurture",
            "entry": {"on": {"event": "page_view", "key": "/pricing"},
                      "if": {"detail": "company", "exists": True}},
            "exit_on": [{"event": "purchase"}], "reentry": {"cool_down": days(30)},
            "steps": steps}


def wf_segment_follow_up(i, rng, segs):
    seg = rng.choice(segs) if segs else None
    if seg is None:
        return wf_browse(i, rng, segs)
    steps = [
        {"id": "settle", "wait": hours(rng.choice([1, 4, 12]))},
        {"id": "still", "if": {"in_segment": seg}, "yes": "mail", "no": "stop"},
        send("mail", "send_email", f"seg_{i}_mail"),
        {"id": "wait_click", "wait": {"after": "opened", "plus": days(1), "timeout": days(5),
                                      "no": "stop"}},
        send("push", "web_push", f"seg_{i}_push"),
        {"id": "stop", "end": True},
    ]
    return {"id": f"wf_{i}_on_{seg}", "entry": {"on": {"segment_entered": seg}},
            "exit_on": [{"segment_exited": seg}],
            "reentry": {"cool_down": days(rng.choice([7, 14]))}, "steps": steps}


def wf_first_purchase(i, rng, segs):
    steps = [
        {"id": "wait", "wait": days(rng.choice([5, 7, 10]))},
        send("ask", "send_email", f"feedback_{i}"),
        {"id": "clicked", "wait_for": {"event": "email_click"}, "from_previous_message": True,
         "within": days(3), "yes": "thank", "no": "remind"},
        send("remind", "send_email", f"feedback_{i}_reminder", "stop"),
        {"id": "thank", "act": {"do": "add_tag", "arg": f"reviewer_{i}"}},
        {"id": "stop", "end": True},
    ]
    return {"id": f"wf_{i}_first_purchase",
            "entry": {"on": {"event": "purchase"},
                      "if": {"happened": {"event": "purchase", "exactly": 1}}},
            "reentry": "never", "steps": steps}


def wf_upsell(i, rng, segs):
    rng_prefix = rng.choice(["/p/1", "/p/2", "/p/3"])
    steps = [
        {"id": "wait", "wait": days(rng.choice([2, 3, 5]))},
        {"id": "morning", "wait": {"until_time": rng.choice(["08:00", "10:00", "18:30"]),
                                   "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat"]}},
        send("cross_sell", "send_email", f"upsell_{i}"),
        {"id": "looked", "wait_for": {"event": "page_view", "key_prefix": rng_prefix},
         "within": days(5), "yes": "push", "no": "stop"},
        send("push", "web_push", f"upsell_{i}_push"),
        {"id": "stop", "end": True},
    ]
    return {"id": f"wf_{i}_upsell",
            "entry": {"on": {"event": "purchase"},
                      "if": {"happened": {"event": "page_view", "key_prefix": rng_prefix,
                                          "within": days(7)}}},
            "exit_on": [{"event": "purchase"}], "steps": steps}


# One kind per seed workflow; workflow i is KINDS[i % 10], its audience AUDIENCES[(i // 10) % 5].
KINDS = [wf_abandoned_cart, wf_welcome, wf_reactivation, wf_best_customer, wf_replenishment,
         wf_browse, wf_lead_nurture, wf_segment_follow_up, wf_first_purchase, wf_upsell]

# A shop running many journeys of one kind runs them for different audiences (one per language
# and B2B / B2C), not five copies for everybody: these five are disjoint in the W1 contacts
# (pl / en / ro; company detail set or not). --broad drops them (every workflow for everybody).
B2B = {"detail": "company", "exists": True}
B2C = {"detail": "company", "exists": False}
AUDIENCES = [
    ("pl_b2c", {"all": [{"detail": "language", "eq": "pl"}, B2C]}),
    ("pl_b2b", {"all": [{"detail": "language", "eq": "pl"}, B2B]}),
    ("en_b2c", {"all": [{"detail": "language", "eq": "en"}, B2C]}),
    ("en_b2b", {"all": [{"detail": "language", "eq": "en"}, B2B]}),
    ("ro", {"detail": "language", "eq": "ro"}),
]
# Lead nurture is for companies only: its audiences are the languages.
B2B_AUDIENCES = [
    ("pl", {"detail": "language", "eq": "pl"}),
    ("en", {"detail": "language", "eq": "en"}),
    ("ro", {"detail": "language", "eq": "ro"}),
    ("customers", {"status": "customer"}),
    ("leads", {"status": "lead"}),
]


def with_audience(wf, name, cond):
    wf["id"] += "_" + name
    entry = wf["entry"]
    entry["if"] = {"all": [entry["if"], cond]} if "if" in entry else cond
    return wf


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("w1_rules", help="a W1 rule file (examples/w1/make_rules.py)")
    parser.add_argument("--workflows", type=int, default=50, metavar="N")
    parser.add_argument("--segments", type=int, default=20, metavar="M")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--broad", action="store_true",
                        help="no audiences: every workflow enters every contact (a stress case)")
    args = parser.parse_args(argv)
    if args.workflows < 0 or args.segments < 0:
        parser.error("counts must be >= 0")
    with open(args.w1_rules, encoding="utf-8") as f:
        base = json.load(f)
    if base.get("workflows") or base.get("segments"):
        parser.error(f"{args.w1_rules} already has workflows or segments")
    rng = random.Random(args.seed)
    segments, names = [], []
    for i in range(args.segments):
        s = segment(i, rng, names)
        segments.append(s)
        names.append(s["name"])
    workflows = []
    for i in range(args.workflows):
        kind = KINDS[i % len(KINDS)]
        wf = kind(i, rng, names)
        if not args.broad:
            audiences = B2B_AUDIENCES if kind is wf_lead_nurture else AUDIENCES
            wf = with_audience(wf, *audiences[(i // len(KINDS)) % len(audiences)])
        workflows.append(wf)

    # Same layout as make_rules.py: one rule / segment / workflow per line.
    def block(key, items, last):
        lines = [f' "{key}": [']
        lines += ["  " + json.dumps(x) + ("," if j + 1 < len(items) else "")
                  for j, x in enumerate(items)]
        lines.append(" ]" + ("" if last else ","))
        return lines

    out = ["{" + '"version": ' + json.dumps(base.get("version", 1)) + ","]
    for k, v in base.items():
        if k not in ("version", "rules"):
            out.append(f" {json.dumps(k)}: {json.dumps(v)},")
    out += block("rules", base["rules"], False)
    out += block("segments", segments, False)
    out += block("workflows", workflows, True)
    out.append("}")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
