"""nudge.diff: two replays of the same history compared as multisets of output rows (ts,
contact, rule, action, arg, as `nudge replay` writes them)."""
import copy
import json

import pandas as pd
import pytest

import nudge
from conftest import DAY, EXAMPLES, HOUR, T0

OLD = {"rules": [
    {"id": "reminder", "on": {"event": "signup"}, "delay": "1d",
     "if": {"not_happened": {"event": "purchase", "within": "1d"}},
     "then": [{"do": "send_email", "arg": "come_back"}]},
    {"id": "thanks", "on": {"event": "purchase"}, "then": [{"do": "send_email", "arg": "thanks"}]}]}


def changed_delay():
    new = copy.deepcopy(OLD)
    new["rules"][0]["delay"] = "2d"
    new["rules"][0]["if"]["not_happened"]["within"] = "2d"
    return new


def ts(seconds):
    return pd.Timestamp(seconds, unit="s", tz="UTC")


@pytest.fixture
def events(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("ts,contact,type,key,value\n"
                    f"{T0},c1,signup,,\n{T0},c2,signup,,\n"
                    f"{T0 + 36 * HOUR},c2,purchase,o1,10\n{T0 + 3 * DAY},c3,signup,,\n")
    return path


def test_a_rule_file_against_itself_changes_nothing(tmp_path):
    rules = EXAMPLES / "wf_abandoned_cart.rules.json"
    d = nudge.diff(rules, rules, EXAMPLES / "wf_abandoned_cart.events.csv")
    assert d.empty and repr(d) == "Diff(added=0, removed=0, contacts=0, rules=0)"
    for frame in (d.added, d.removed, d.summary, d.per_day, d.contacts):
        assert frame.empty


def test_a_longer_delay_moves_and_drops_exactly_the_predicted_actions(events, tmp_path):
    new_path = tmp_path / "new.rules.json"
    new_path.write_text(json.dumps(changed_delay()))
    d = nudge.diff(OLD, new_path, events)
    # By hand: the 1-day reminder went to c1 and c2 at T0+1d (c2 bought only at T0+36h) and to
    # c3 at T0+4d; the 2-day one goes to c1 at T0+2d and c3 at T0+5d, and c2 bought within 2d.
    cols = ["ts", "contact", "rule", "action", "arg"]
    assert d.removed[cols].values.tolist() == [
        [ts(T0 + DAY), "c1", "reminder", "send_email", "come_back"],
        [ts(T0 + DAY), "c2", "reminder", "send_email", "come_back"],
        [ts(T0 + 4 * DAY), "c3", "reminder", "send_email", "come_back"]]
    assert d.added[cols].values.tolist() == [
        [ts(T0 + 2 * DAY), "c1", "reminder", "send_email", "come_back"],
        [ts(T0 + 5 * DAY), "c3", "reminder", "send_email", "come_back"]]
    assert d.summary.values.tolist() == [["reminder", 2, 3, 3]]   # "thanks" did not change
    assert list(d.summary.columns) == ["rule", "added", "removed", "contacts"]
    assert d.per_day.values.tolist() == [[ts(T0 + DAY), 0, 2], [ts(T0 + 2 * DAY), 1, 0],
                                         [ts(T0 + 4 * DAY), 0, 1], [ts(T0 + 5 * DAY), 1, 0]]
    assert d.contacts.values.tolist() == [["c1", 1, 1], ["c2", 0, 1], ["c3", 1, 1]]
    assert not d.empty
    assert "<td>reminder</td><td>2</td><td>3</td><td>3</td>" in d._repr_html_()


def test_actions_are_compared_as_multisets(tmp_path):
    # Two identical rows in OLD, one in NEW: one is removed, not none and not both.
    events = tmp_path / "events.csv"
    events.write_text(f"ts,contact,type,key,value\n{T0},c1,page_view,/a,\n{T0},c1,page_view,/a,\n")
    hi = {"id": "hi", "on": {"event": "page_view"}, "then": [{"do": "send_email", "arg": "hi"}]}
    once = dict(hi, reentry="once")
    d = nudge.diff({"rules": [hi]}, {"rules": [once]}, events)
    assert (len(d.added), len(d.removed)) == (0, 1)
    assert d.removed[["contact", "rule", "arg"]].values.tolist() == [["c1", "hi", "hi"]]
    back = nudge.diff({"rules": [once]}, {"rules": [hi]}, events)
    assert (len(back.added), len(back.removed)) == (1, 0)


def test_a_workflow_step_is_its_own_rule_in_the_summary():
    rules = json.loads((EXAMPLES / "wf_abandoned_cart.rules.json").read_text())
    new = copy.deepcopy(rules)
    steps = new["workflows"][0]["steps"]
    reminder = next(s for s in steps if s["id"] == "reminder_2")
    reminder["send"]["arg"] = "cart_reminder_2b"
    d = nudge.diff(rules, new, EXAMPLES / "wf_abandoned_cart.events.csv")
    wf = new["workflows"][0]["id"]
    assert d.summary["rule"].tolist() == [f"{wf}/reminder_2"]
    assert (d.summary["added"] == d.summary["removed"]).all()
    assert set(d.added["arg"]) == {"cart_reminder_2b"}
