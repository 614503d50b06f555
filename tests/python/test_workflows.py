"""Workflows through the Python module: step ids on due actions, per-step statistics."""
import datetime as dt

import nudge

from conftest import DAY, HOUR, T0, utc

CART = {"rules": [], "workflows": [{
    "id": "cart",
    "entry": {"on": {"event": "cart"}},
    "exit_on": [{"event": "purchase"}],
    "steps": [
        {"id": "wait_1h", "wait": "1h"},
        {"id": "reminder", "send": {"do": "send_email", "arg": "cart_reminder",
                                    "params": {"subject": "Forgot something?"}}},
        {"id": "wait_1d", "wait": "1d"},
        {"id": "last_call", "send": {"do": "send_sms", "arg": "cart_last_call"}},
    ]}]}


def test_workflow_actions_name_their_step_and_rules_do_not_change():
    engine = nudge.Engine(nudge.Program.from_json(CART))
    got = engine.process([("a", "cart", T0, "sku1"), ("b", "cart", T0, "sku2"),
                          ("b", "purchase", T0 + 2 * HOUR, "o1")], now=T0 + 3 * DAY)
    assert [(a.ts_epoch, a.contact, a.rule, a.step, a.arg) for a in got] == [
        (T0 + HOUR, "a", "cart", "reminder", "cart_reminder"),
        (T0 + HOUR, "b", "cart", "reminder", "cart_reminder"),
        (T0 + HOUR + DAY, "a", "cart", "last_call", "cart_last_call"),
    ]
    first = got[0]
    assert first.params == {"subject": "Forgot something?"}
    assert first.to_dict()["step"] == "reminder"
    assert repr(first) == ("DueAction(contact='a', rule='cart', step='reminder', "
                           "action='send_email', arg='cart_reminder', ts=2024-01-01T01:00:00Z, "
                           "params={'subject': 'Forgot something?'})")


def test_workflow_statistics_per_step():
    engine = nudge.Engine(nudge.Program.from_json(CART))
    engine.process([("a", "cart", T0, "sku1"), ("b", "cart", T0, "sku2")], now=T0 + 2 * HOUR)
    stats = engine.workflow_stats()["cart"]
    assert (stats["entered"], stats["completed"], stats["exited"], stats["sent"]) == (2, 0, 0, 2)
    assert stats["active"] == 2
    assert stats["steps"]["wait_1d"]["waiting"] == 2
    assert stats["steps"]["reminder"]["sent"] == 2
    assert stats["first"] == dt.datetime.fromtimestamp(T0, dt.timezone.utc)
    engine.process([("b", "purchase", T0 + 3 * HOUR, "o1")], now=T0 + 3 * HOUR)
    stats = engine.workflow_stats()["cart"]
    assert (stats["exited"], stats["active"], stats["steps"]["wait_1d"]["waiting"]) == (1, 1, 1)
    assert engine.stats() == {}


def _with(status=None, version=None, reminder=None):
    import copy
    rules = copy.deepcopy(CART)
    w = rules["workflows"][0]
    if status:
        w["status"] = status
    if version:
        w["version"] = version
    if reminder:
        w["steps"][1]["send"]["arg"] = reminder
    return nudge.Program.from_json(rules)


def test_pause_resume_archive_and_a_new_version_through_change_program():
    engine = nudge.Engine(nudge.Program.from_json(CART))
    engine.process([("a", "cart", T0, "sku1"), ("b", "cart", T0 + 1800, "sku2")],
                   now=T0 + HOUR)
    # Paused at 01:00: b's hour ends at 01:30 inside the pause and is held.
    engine.change_program(_with(status="paused"), at=utc(T0 + HOUR))
    assert engine.process([("c", "cart", T0 + 2 * HOUR, "sku3")], now=T0 + 5 * HOUR) == []
    # Version 2 (another reminder text), active at 05:00: b resumes exactly then, on version 2.
    engine.change_program(_with(version=2, reminder="cart_reminder_v2"), at=T0 + 5 * HOUR)
    got = engine.advance(T0 + 3 * DAY)
    assert [(a.ts_epoch, a.contact, a.step, a.arg) for a in got] == [
        (T0 + 5 * HOUR, "b", "reminder", "cart_reminder_v2"),
        (T0 + HOUR + DAY, "a", "last_call", "cart_last_call"),
        (T0 + 5 * HOUR + DAY, "b", "last_call", "cart_last_call"),
    ]
    stats = engine.workflow_stats()["cart"]
    assert (stats["entered"], stats["completed"], stats["ended"]) == (2, 2, 0)
    # Archived: a run inside ends, counted as ended.
    engine.process([("d", "cart", T0 + 3 * DAY, "sku4")], now=T0 + 3 * DAY)
    engine.change_program(_with(status="archived", version=2, reminder="cart_reminder_v2"),
                          at=T0 + 3 * DAY)
    stats = engine.workflow_stats()["cart"]
    assert (stats["ended"], stats["active"], stats["steps"]["wait_1h"]["ended"]) == (1, 0, 1)
    assert engine.advance(T0 + 9 * DAY) == []


def test_a_refused_change_names_the_field():
    engine = nudge.Engine(nudge.Program.from_json(CART))
    engine.process([("a", "cart", T0, "sku1")], now=T0)
    try:
        engine.change_program(_with(reminder="other"), at=T0)
    except nudge.RuleError as e:
        assert str(e).startswith("/workflows/0/version: the steps of workflow \"cart\" changed")
    else:
        raise AssertionError("a changed workflow with the same version was accepted")


def test_a_workflows_delivery_policy_defers_in_quiet_hours_and_drops_without_consent():
    import copy
    rules = copy.deepcopy(CART)
    rules["delivery"] = {"default_time_zone": "Europe/Warsaw"}
    rules["workflows"][0]["delivery"] = {"quiet_hours": {"from": "21:00", "to": "08:00"}}
    engine = nudge.Engine(nudge.Program.from_json(rules))
    # Both consent to e-mail; neither to SMS, so the last call is dropped.
    engine.upsert_contact("a", {"consent": {"email": True}})
    engine.upsert_contact("b", {"consent": {"email": True}, "time_zone": "America/New_York"})
    # 19:30 UTC + 1h = 20:30 UTC: 21:30 in Warsaw (quiet until 08:00 CET = 07:00 UTC), 15:30 in
    # New York.
    evening = T0 + 19 * HOUR + 1800
    got = engine.process([("a", "cart", evening, "sku1"), ("b", "cart", evening, "sku2")],
                         now=evening + 3 * DAY)
    assert [(a.ts_epoch, a.contact, a.step) for a in got] == [
        (evening + HOUR, "b", "reminder"),
        (T0 + DAY + 7 * HOUR, "a", "reminder"),
    ]
    stats = engine.workflow_stats()["cart"]
    # Nested as for rules (stats()[rule]["delivery"]) and as in C++ (workflow_stats::delivery).
    assert stats["delivery"]["deferred_hours"] == 1
    assert stats["steps"]["reminder"]["delivery"]["deferred_hours"] == 1
    assert stats["steps"]["last_call"]["delivery"]["no_consent"] == 2
    assert (stats["sent"], stats["completed"]) == (2, 2)
