"""Identity from Python: an identify event merges a visitor into a known contact; the visitor's
id then answers for the merged contact; bad identify events raise InputError and change
nothing."""
import pytest

import nudge
from conftest import DAY, HOUR, T0, rows, utc

RULES = {
    "segments": [{"name": "shoe_fan",
                  "if": {"happened": {"event": "page_view", "key": "/shoes", "at_least": 2}}}],
    "scoring": {"rules": [{"id": "views", "on": {"event": "page_view"}, "points": 10}]},
    "rules": [
        {"id": "welcome", "on": {"event": "identify"}, "reentry": "once",
         "then": [{"do": "send_email", "arg": "welcome"}]},
        {"id": "fan", "on": {"segment_entered": "shoe_fan"},
         "then": [{"do": "send_email", "arg": "fan"}]},
    ],
}


class DictStore:
    def __init__(self):
        self.states = {}

    def load(self, id):
        s = self.states.get(id)
        return None if s is None else s.copy()

    def save(self, states):
        for s in states:
            self.states[s.id] = s.copy()

    def due(self, now):
        return [i for i, s in self.states.items() if s.next_due is not None and s.next_due <= now]

    def segment_members(self, name):
        return [i for i, s in self.states.items() if name in s.segments]


def test_identify_merges_the_visitor_and_aliases_its_id():
    store = DictStore()
    engine = nudge.Engine(nudge.Program.from_json(RULES), store=store)
    engine.upsert_contact("c1", owner="anna")
    due = engine.process([("v1", "page_view", T0, "/shoes"),
                          ("c1", "page_view", T0 + HOUR, "/shoes"),
                          {"contact": "v1", "type": "identify", "ts": T0 + 2 * HOUR, "key": "c1"}],
                         now=T0 + 2 * HOUR)
    # The identify event runs on c1 with both views: "welcome", then shoe_fan entered.
    assert rows(due) == [(T0 + 2 * HOUR, "c1", "welcome", "send_email", "welcome"),
                         (T0 + 2 * HOUR, "c1", "fan", "send_email", "fan")]
    assert store.states["v1"].merged_into == "c1"
    assert store.states["v1"].segments == {}
    assert store.states["c1"].segments == {"shoe_fan": utc(T0 + 2 * HOUR)}
    assert engine.segment_members("shoe_fan") == ["c1"]
    c1 = engine.contact("c1")
    assert (c1.score, c1.owner) == (20.0, "anna")
    # A later event for the visitor's id reaches c1.
    assert engine.process([("v1", "page_view", T0 + DAY, "/home")], now=T0 + DAY) == []
    assert engine.contact("c1").score == 30.0
    # Identifying the same pair again merges nothing ("welcome" runs once).
    assert engine.process([("v1", "identify", T0 + 2 * DAY, "c1")], now=T0 + 2 * DAY) == []


def test_bad_identify_events_raise_and_change_nothing():
    engine = nudge.Engine(nudge.Program.from_json(RULES))
    engine.process([("v1", "page_view", T0, "/shoes"), ("v1", "identify", T0, "c1")], now=T0)
    with pytest.raises(nudge.InputError,
                       match=r'event 0 \(contact "v1"\): identify: "v1" was already identified '
                             r'as "c1"; identifying it as "c2"') as info:
        engine.process([("v1", "identify", T0 + HOUR, "c2")], now=T0 + HOUR)
    assert info.value.event_index == 0
    with pytest.raises(nudge.InputError, match="needs the known contact's id as its key"):
        engine.process([("v2", "page_view", T0), ("v2", "identify", T0 + HOUR)], now=T0 + HOUR)
    assert engine.contact("v2") is None
    assert engine.contact("c2") is None
    assert engine.contact("c1").score == 10.0
