"""Notebook rendering: _repr_html_ of Program, statistics, a contact's timeline and a diff, as
escaped HTML tables."""
import html

import pandas as pd

import nudge
from conftest import DAY, T0

HOSTILE = '<script>alert("x")</script>&amp'
RULES = {"timeline": {"size": 20}, "rules": [
    {"id": "welcome", "on": {"event": "signup"}, "delay": "1d",
     "then": [{"do": "send_email", "arg": "welcome"}, {"do": "add_tag", "arg": "greeted"}]},
    {"id": "pricing", "on": {"event": "page_view", "key": "/pricing"},
     "then": [{"do": "send_email", "arg": "pricing<b>"}]}],
    "segments": [{"name": "greeted", "if": {"has_tag": "greeted"}}]}


def cells(text):
    return [c.split("</td>")[0] for c in text.split("<td>")[1:]]


def test_program_renders_one_row_per_rule_and_segment():
    program = nudge.Program.from_json(RULES)
    out = program._repr_html_()
    assert out.startswith('<table class="nudge"><caption>nudge program (2 rules, 1 segment)')
    assert cells(out) == ["rule", "welcome", "signup", "1d", "send_email welcome; add_tag greeted",
                          "rule", "pricing", "page_view /pricing", "", "send_email pricing&lt;b&gt;",
                          "segment", "greeted", "", "", ""]


def test_stats_render_and_equal_plain_dicts():
    engine = nudge.Engine(nudge.Program.from_json(RULES))
    engine.process([("c1", "signup", T0)], now=T0 + DAY)
    stats = engine.stats()
    assert isinstance(stats, dict) and stats == dict(stats)
    out = stats._repr_html_()
    assert "<caption>nudge rule statistics (2 rules)</caption>" in out
    row = cells(out)[:13]
    assert row == ["welcome", "1", "1", "0", "0", "1", "0", "0", "0", "0", "0",
                   "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"]


def test_timeline_escapes_a_hostile_contact_id():
    engine = nudge.Engine(nudge.Program.from_json(RULES))
    engine.process([(HOSTILE, "signup", T0), (HOSTILE, "page_view", T0 + 60, "/pricing")],
                   now=T0 + DAY)
    timeline = engine.explain(HOSTILE)
    assert isinstance(timeline, list) and timeline.contact == HOSTILE
    out = timeline._repr_html_()
    assert "<script>" not in out and HOSTILE not in out
    assert f"<caption>timeline of contact {html.escape(HOSTILE)} ({len(timeline)} entries)" in out
    # Every entry's text is a cell, escaped.
    for entry in timeline:
        assert f"<td>{html.escape(entry['text'])}</td>" in out
    assert "<td>2024-01-01T00:01:00Z</td>" in out
    frame = timeline.to_frame()
    assert list(frame.columns) == ["ts", "source", "what", "reason", "until", "text"]
    assert frame["ts"].iloc[0] == pd.Timestamp(T0, unit="s", tz="UTC")
    assert str(frame["until"].dtype) == "datetime64[ns, UTC]"


def test_workflow_stats_render_one_row_per_step():
    from conftest import EXAMPLES
    engine = nudge.Engine(nudge.Program.load(EXAMPLES / "wf_abandoned_cart.rules.json"))
    engine.replay(EXAMPLES / "wf_abandoned_cart.events.csv")
    stats = engine.workflow_stats()
    out = stats._repr_html_()
    steps = [s for w in stats.values() for s in w["steps"]]
    assert out.count("<tr><td>abandoned_cart</td>") == len(steps)
    assert "<td>reminder_1</td>" in out
