"""Workflows through the Python module: step ids on due actions, per-step statistics."""
import datetime as dt

import nudge

from conftest import DAY, HOUR, T0

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
    assert [(a.due_epoch, a.contact, a.rule, a.step, a.arg) for a in got] == [
        (T0 + HOUR, "a", "cart", "reminder", "cart_reminder"),
        (T0 + HOUR, "b", "cart", "reminder", "cart_reminder"),
        (T0 + HOUR + DAY, "a", "cart", "last_call", "cart_last_call"),
    ]
    first = got[0]
    assert first.params == {"subject": "Forgot something?"}
    assert first.to_dict()["step"] == "reminder"
    assert repr(first) == ("DueAction(contact='a', rule='cart', step='reminder', "
                           "action='send_email', arg='cart_reminder', due=2024-01-01T01:00:00Z, "
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
