"""The seed scenarios of the core issue, driven from Python with rules as dicts.

Each inline test states its rules and the exact actions and times expected; the parametrized
tests run every examples/rules scenario both through Engine.process (events as Python tuples)
and through Engine.replay (files read in C++) and compare with its expected CSV."""
import pytest

import nudge
from conftest import (DAY, HOUR, SCENARIOS, T0, read_contacts_csv, read_events_csv,
                      read_expected_csv, rows)


def run(rules, events, now, contacts=()):
    engine = nudge.Engine(nudge.Program.from_json(rules))
    for cid, fields in contacts:
        engine.upsert_contact(cid, **fields)
    return rows(engine.process(events, now=now)), engine


def test_reactivation_url_and_purchase_variants():
    rules = {"rules": [
        {"id": "reactivate_offer", "on": {"event": "page_view", "key": "/offer"}, "delay": "60d",
         "if": {"not_happened": {"event": "page_view", "key": "/offer", "within": "60d"}},
         "then": [{"do": "send_email", "arg": "offer_reminder"}]},
        {"id": "winback", "on": {"event": "purchase"}, "delay": "60d",
         "if": {"not_happened": {"event": "purchase", "within": "60d"}},
         "then": [{"do": "send_email", "arg": "winback"}]},
    ]}
    events = [("c1", "page_view", T0, "/offer"),
              ("c2", "page_view", T0, "/offer"), ("c2", "page_view", T0 + 10 * DAY, "/offer"),
              ("c3", "purchase", T0, "o1"), ("c3", "purchase", T0 + 30 * DAY, "o2"),
              ("c4", "page_view", T0, "/home")]
    got, engine = run(events=events, rules=rules, now=T0 + 120 * DAY)
    assert got == [
        (T0 + 60 * DAY, "c1", "reactivate_offer", "send_email", "offer_reminder"),
        (T0 + 70 * DAY, "c2", "reactivate_offer", "send_email", "offer_reminder"),
        (T0 + 90 * DAY, "c3", "winback", "send_email", "winback"),
    ]
    s = engine.stats()
    assert (s["reactivate_offer"]["passed"], s["reactivate_offer"]["failed"]) == (2, 1)
    assert (s["winback"]["passed"], s["winback"]["failed"]) == (1, 1)


def test_reactivation_window_boundary_to_the_second():
    rules = {"rules": [
        {"id": "winback", "on": {"event": "purchase"}, "delay": "60d",
         "if": {"not_happened": {"event": "purchase", "within": "60d"}},
         "then": [{"do": "send_email", "arg": "winback"}]}]}
    engine = nudge.Engine(nudge.Program.from_json(rules))
    engine.process([("c1", "purchase", T0, "o1")], now=T0)
    assert engine.advance(T0 + 60 * DAY - 1) == []
    assert rows(engine.advance(T0 + 60 * DAY)) == [(T0 + 60 * DAY, "c1", "winback", "send_email",
                                                    "winback")]


def test_abandoned_cart_by_url_and_by_custom_events():
    rules = {"event_types": ["CART", "PURCHASE"], "rules": [
        {"id": "cart_by_url", "on": {"event": "page_view", "key_prefix": "/cart"}, "delay": "1h",
         "if": {"not_happened": {"event": "page_view", "key": "/thank-you",
                                 "since_trigger": True}},
         "then": [{"do": "send_email", "arg": "cart_reminder"}], "reentry": {"once_per": "1d"}},
        {"id": "cart_by_event", "on": {"event": "CART"}, "delay": "1h",
         "if": {"not_happened": {"event": "PURCHASE", "since_trigger": True}},
         "then": [{"do": "send_email", "arg": "cart_event_reminder"}]},
    ]}
    events = [("c1", "page_view", T0, "/cart"), ("c1", "page_view", T0 + 600, "/cart/checkout"),
              ("c2", "page_view", T0, "/cart"), ("c2", "page_view", T0 + 1800, "/thank-you"),
              ("c3", "CART", T0, "sku1"), ("c3", "PURCHASE", T0 + 1200, "o1"),
              ("c4", "PURCHASE", T0, "o2"), ("c4", "CART", T0 + 2 * HOUR, "sku2")]
    got, engine = run(rules, events, now=T0 + DAY)
    assert got == [
        (T0 + HOUR, "c1", "cart_by_url", "send_email", "cart_reminder"),
        (T0 + 3 * HOUR, "c4", "cart_by_event", "send_email", "cart_event_reminder"),
    ]
    assert engine.stats()["cart_by_url"]["suppressed"] == 1


def test_coupon_for_tagged_customers():
    rules = {"rules": [
        {"id": "become_customer", "on": {"event": "purchase"},
         "then": [{"do": "set_status", "arg": "customer"}]},
        {"id": "coupon", "on": {"tag_added": "ZAKUPY-W-SEKCJI-MESKIEJ"},
         "if": {"status": "customer"},
         "then": [{"do": "generate_coupon", "arg": "coupon", "params": {"discount": "10%"}},
                  {"do": "send_email", "arg": "coupon"}]}]}
    events = [("c1", "purchase", T0, "o1", {"value": 30.0}),
              ("c2", "tag_added", T0, "ZAKUPY-W-SEKCJI-MESKIEJ"),
              ("c1", "tag_added", T0 + DAY, "ZAKUPY-W-SEKCJI-MESKIEJ"),
              ("c3", "tag_added", T0 + DAY, "NEWSLETTER")]
    engine = nudge.Engine(nudge.Program.from_json(rules))
    due = engine.process(events, now=T0 + DAY)
    assert rows(due) == [(T0 + DAY, "c1", "coupon", "generate_coupon", "coupon"),
                         (T0 + DAY, "c1", "coupon", "send_email", "coupon")]
    assert due[0].params == {"discount": "10%"}
    assert engine.contact("c1").status == "customer"
    assert engine.contact("c2").status == "lead"


def test_lead_assignment_picks_a_rep_by_contact_hash():
    cond = {"all": [{"any": [{"detail": "company", "exists": True},
                             {"field": "stage", "exists": True}]},
                    {"field": "owner", "exists": False}]}
    then = [{"do": "assign_owner", "arg": "sales", "notify": True},
            {"do": "notify_owner", "arg": "new_lead"}]
    rules = {"owner_groups": {"sales": ["anna", "bartek", "celina"]}, "rules": [
        {"id": "lead_pricing", "on": {"event": "page_view", "key": "/pricing"}, "if": cond,
         "then": then},
        {"id": "lead_tag", "on": {"tag_added": "hot_lead"}, "if": cond, "then": then}]}
    contacts = [("c1", {"details": {"company": "Ekomed"}}), ("c2", {"details": {"language": "en"}}),
                ("c3", {"stage": "trial"}), ("c4", {"details": {"company": "Medix"}})]
    events = [("c1", "page_view", T0, "/pricing"), ("c2", "page_view", T0, "/pricing"),
              ("c4", "tag_added", T0 + HOUR, "hot_lead"),
              ("c3", "tag_added", T0 + 2 * HOUR, "hot_lead"),
              ("c4", "page_view", T0 + 3 * HOUR, "/pricing"),
              ("c1", "page_view", T0 + DAY, "/pricing")]
    got, engine = run(rules, events, now=T0 + DAY, contacts=contacts)
    assert got == [
        (T0, "c1", "lead_pricing", "assign_owner", "celina"),
        (T0, "c1", "lead_pricing", "notify_owner", "new_lead"),
        (T0 + HOUR, "c4", "lead_tag", "assign_owner", "celina"),
        (T0 + HOUR, "c4", "lead_tag", "notify_owner", "new_lead"),
        (T0 + 2 * HOUR, "c3", "lead_tag", "assign_owner", "anna"),
        (T0 + 2 * HOUR, "c3", "lead_tag", "notify_owner", "new_lead"),
    ]
    assert [engine.contact(c).owner for c in ("c1", "c2", "c3", "c4")] == [
        "celina", "", "anna", "celina"]


def test_education_second_lesson_only_if_the_first_was_opened():
    rules = {"rules": [
        {"id": "education", "on": {"stage_entered": "spring_course"},
         "if": {"any": [{"has_tag": "student"}, {"detail": "language", "exists": True}]},
         "then": [{"do": "send_email", "arg": "edu_1"},
                  {"do": "notify_owner", "arg": "edu_started"},
                  {"do": "send_email", "arg": "edu_2", "delay": "3d",
                   "if": {"happened": {"event": "email_open", "since_trigger": True}}}]}]}
    contacts = [("c2", {"details": {"language": "pl"}})]
    events = [("c1", "tag_added", T0, "student"), ("c2", "stage_entered", T0, "spring_course"),
              ("c3", "stage_entered", T0, "spring_course"),
              ("c1", "stage_entered", T0 + HOUR, "spring_course"),
              ("c1", "email_open", T0 + DAY, "edu_1")]
    got, engine = run(rules, events, now=T0 + 10 * DAY, contacts=contacts)
    assert got == [
        (T0, "c2", "education", "send_email", "edu_1"),
        (T0, "c2", "education", "notify_owner", "edu_started"),
        (T0 + HOUR, "c1", "education", "send_email", "edu_1"),
        (T0 + HOUR, "c1", "education", "notify_owner", "edu_started"),
        (T0 + HOUR + 3 * DAY, "c1", "education", "send_email", "edu_2"),
    ]


def test_restaurant_loyalty_thanks_fifth_order_and_miss_you():
    rules = {"event_types": ["order_placed"], "rules": [
        {"id": "thanks", "on": {"event": "order_placed"},
         "then": [{"do": "send_email", "arg": "order_thanks"}]},
        {"id": "fifth_order", "on": {"event": "order_placed"},
         "if": {"happened": {"event": "order_placed", "exactly": 5}},
         "then": [{"do": "send_sms", "arg": "fifth_order"}]},
        {"id": "miss_you", "on": {"event": "order_placed"}, "delay": "30d",
         "if": {"not_happened": {"event": "order_placed", "within": "30d"}},
         "then": [{"do": "send_email", "arg": "miss_you"}]}]}
    events = [("c1", "order_placed", T0 + d * DAY, f"o{d}") for d in (0, 2, 4, 6, 8)]
    events.append(("c2", "order_placed", T0 + DAY, "x1"))
    got, _ = run(rules, sorted(events, key=lambda e: e[2]), now=T0 + 60 * DAY)
    thanks = [(T0 + d * DAY, "c1", "thanks", "send_email", "order_thanks") for d in (0, 2, 4, 6, 8)]
    assert got == [thanks[0],
                   (T0 + DAY, "c2", "thanks", "send_email", "order_thanks"),
                   *thanks[1:],
                   (T0 + 8 * DAY, "c1", "fifth_order", "send_sms", "fifth_order"),
                   (T0 + 31 * DAY, "c2", "miss_you", "send_email", "miss_you"),
                   (T0 + 38 * DAY, "c1", "miss_you", "send_email", "miss_you")]


def test_split_invariance_one_batch_or_event_by_event():
    rules = {"rules": [
        {"id": "winback", "on": {"event": "purchase"}, "delay": "60d",
         "if": {"not_happened": {"event": "purchase", "within": "60d"}},
         "then": [{"do": "send_email", "arg": "winback"}]}]}
    program = nudge.Program.from_json(rules)
    events = [("c1", "purchase", T0, "o1"), ("c2", "purchase", T0 + DAY, "o2"),
              ("c1", "purchase", T0 + 70 * DAY, "o3")]
    whole = nudge.Engine(program).process(events, now=T0 + 200 * DAY)
    engine = nudge.Engine(program)
    pieces = []
    for e in events:
        pieces += engine.process([e], now=e[2])
    pieces += engine.advance(T0 + 200 * DAY)
    assert rows(pieces) == rows(whole)
    assert [a.idempotency_key for a in pieces] == [a.idempotency_key for a in whole]


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_files_through_process(name, scenario_files):
    f = scenario_files(name)
    program = nudge.Program.from_json(f["rules"])
    engine = nudge.Engine(program)
    events = read_events_csv(f["events"])
    due = []
    if f["contacts"]:
        # At the log's first event, as replay loads a contacts file.
        for cid, fields in read_contacts_csv(f["contacts"]):
            due += engine.upsert_contact(cid, at=events[0][2], **fields)
    now = events[-1][2] + int(program.longest_delay.total_seconds())
    due += engine.process(events, now=now)
    # Replay's default end goes on while timers are pending (messages deferred past the longest
    # delay, a segment's window edge): the expected file runs to the last of them.
    expected = read_expected_csv(f["expected"])
    if expected and expected[-1][0] > now:
        due += engine.advance(expected[-1][0])
    due.sort(key=lambda a: (a.ts_epoch, a.contact))
    assert rows(due) == read_expected_csv(f["expected"])


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_files_through_replay(name, scenario_files, tmp_path):
    f = scenario_files(name)
    engine = nudge.Engine(nudge.Program.from_json(f["rules"]))
    result = engine.replay(f["events"], contacts=f["contacts"])
    expected = read_expected_csv(f["expected"])
    assert rows(result.actions) == expected
    assert len(result) == len(expected)
    out = tmp_path / "actions.csv"
    result.write_csv(out, time_format="epoch")
    assert out.read_text() == f["expected"].read_text()
