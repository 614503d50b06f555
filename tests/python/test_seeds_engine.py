"""Calendar months, workflow-state conditions and locations through the Python binding (the
rules come from JSON; expected actions computed by hand, see docs/rules.md)."""
import pytest

import nudge
from conftest import DAY, HOUR, T0, rows

JAN31 = T0 + 30 * DAY + 10 * HOUR  # 2024-01-31T10:00:00Z
FEB29 = T0 + 59 * DAY + 10 * HOUR  # 2024-02-29T10:00:00Z


def test_a_month_delay_and_window_count_the_calendar():
    program = nudge.Program.from_json({"rules": [
        {"id": "recheck", "on": {"event": "purchase"}, "delay": "1mo",
         "if": {"not_happened": {"event": "purchase", "within": "1mo"}},
         "then": [{"do": "send_email", "arg": "come_back"}]}]})
    engine = nudge.Engine(program)
    # 31 January + 1 month = 29 February (2024 is a leap year), same time of day.
    got = engine.process([("ann", "purchase", JAN31, "", None)], now=FEB29 + DAY)
    assert rows(got) == [(FEB29, "ann", "recheck", "send_email", "come_back")]
    assert program.longest_delay.total_seconds() == 31 * DAY


def test_a_month_unit_where_only_fixed_lengths_work_is_refused_with_the_units():
    with pytest.raises(nudge.RuleError, match=r'/rules/0/then/0/delay: "2mo" counts calendar '
                                              r'months'):
        nudge.Program.from_json({"rules": [
            {"id": "r", "on": {"event": "signup"},
             "then": [{"do": "send_email", "arg": "x", "delay": "2mo"}]}]})
    with pytest.raises(nudge.RuleError, match=r"mo \(calendar months\), y \(calendar years\)"):
        nudge.Program.from_json({"rules": [
            {"id": "r", "on": {"event": "signup"}, "delay": "2x",
             "then": [{"do": "send_email", "arg": "x"}]}]})


def test_in_workflow_and_completed_workflow():
    program = nudge.Program.from_json({
        "rules": [
            {"id": "nudge_at_wait", "on": {"event": "page_view"},
             "if": {"in_workflow": "welcome", "step": "pause"},
             "then": [{"do": "web_push", "arg": "hello"}]},
            {"id": "done", "on": {"event": "page_view"},
             "if": {"completed_workflow": "welcome"},
             "then": [{"do": "web_push", "arg": "done"}]}],
        "workflows": [{"id": "welcome", "entry": {"on": {"event": "signup"}},
                       "steps": [{"id": "pause", "wait": "1d"},
                                 {"id": "mail", "send": {"do": "send_email", "arg": "w"}}]}]})
    engine = nudge.Engine(program)
    got = engine.process([("a", "signup", T0, "", None), ("a", "page_view", T0 + HOUR, "", None),
                          ("a", "page_view", T0 + 2 * DAY, "", None)], now=T0 + 3 * DAY)
    assert rows(got) == [
        (T0 + HOUR, "a", "nudge_at_wait", "web_push", "hello"),
        (T0 + DAY, "a", "welcome/mail", "send_email", "w"),
        (T0 + 2 * DAY, "a", "done", "web_push", "done"),
    ]
    with pytest.raises(nudge.RuleError, match='no workflow "welcom" is defined'):
        nudge.Program.from_json({"rules": [
            {"id": "r", "on": {"event": "signup"}, "if": {"exited_workflow": "welcom"},
             "then": [{"do": "send_email", "arg": "x"}]}],
            "workflows": [{"id": "welcome", "entry": {"on": {"event": "signup"}},
                           "steps": [{"id": "pause", "wait": "1d"}]}]})


def test_locations_from_the_profile_and_from_event_props():
    program = nudge.Program.from_json({
        "areas": [{"name": "old_town", "lat": 52.2497, "lon": 21.0122, "km": 1}],
        "rules": [{"id": "enter", "on": {"area_entered": "old_town"},
                   "then": [{"do": "web_push", "arg": "coffee"}]}]})
    engine = nudge.Engine(program)
    engine.upsert_contact("a", {"location": (52.2297, 21.0122)})
    assert engine.contact("a").location == (52.2297, 21.0122)
    assert engine.contact("a").to_dict()["location"] == (52.2297, 21.0122)
    got = engine.process([("a", "page_view", T0, "/map", {"lat": 52.2497, "lon": 21.0122})],
                         now=T0 + HOUR)
    assert rows(got) == [(T0, "a", "enter", "web_push", "coffee")]
    assert engine.contact("a").location == (52.2497, 21.0122)
    with pytest.raises(ValueError, match="latitude 91 is outside -90 to 90"):
        engine.upsert_contact("b", {"location": (91, 0)})
    with pytest.raises(nudge.InputError, match="props/lon: longitude 200 is outside -180 to 180"):
        engine.process([("a", "page_view", T0 + HOUR, "", {"lat": 0, "lon": 200})],
                       now=T0 + 2 * HOUR)
    engine.upsert_contact("a", {"location": None})
    assert engine.contact("a").location is None
