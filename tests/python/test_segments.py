"""Segments from Python: membership queries through the engine and the store, states."""
import pytest

import nudge
from conftest import DAY, HOUR, T0, rows, utc

RULES = {
    "event_types": ["app_session"],
    "segments": [
        {"name": "engaged",
         "if": {"sum": {"event": "app_session", "property": "minutes", "within": "7d", "ge": 30}}},
        {"name": "visitor", "if": {"happened": {"event": "page_view", "within": "1d"}}},
    ],
    "rules": [
        {"id": "welcome_engaged", "on": {"segment_entered": "engaged"},
         "then": [{"do": "send_email", "arg": "engaged"}]},
    ],
}


def test_segment_membership_flips_at_the_window_edge_and_is_queryable():
    engine = nudge.Engine(nudge.Program.from_json(RULES))
    assert engine.program.segments == ["engaged", "visitor"]
    due = engine.process([("ann", "app_session", T0, "", {"minutes": 20}),
                          ("ann", "app_session", T0 + DAY, "", {"minutes": 15}),
                          ("bob", "app_session", T0, "", {"minutes": 5}),
                          ("bob", "page_view", T0 + HOUR, "/home")], now=T0 + DAY)
    # 20 + 15 minutes reach 30 with the second session; bob's 5 minutes do not.
    assert rows(due) == [(T0 + DAY, "ann", "welcome_engaged", "send_email", "engaged")]
    assert engine.segment_members("engaged") == ["ann"]
    assert engine.segment_size("engaged") == 1
    # bob's view left the 1-day window at T0 + 1h + 1d, after now: he is still a visitor.
    assert engine.segment_members("visitor") == ["bob"]
    assert engine.segment_size("visitor") == 1
    # The 20 minutes leave the window (t - 7d, t] at exactly T0 + 7d.
    engine.advance(T0 + 7 * DAY - 1)
    assert engine.segment_members("engaged") == ["ann"]
    assert engine.segment_members("visitor") == []
    engine.advance(T0 + 7 * DAY)
    assert engine.segment_members("engaged") == []
    assert engine.segment_size("engaged") == 0


def test_segment_queries_name_an_unknown_segment():
    engine = nudge.Engine(nudge.Program.from_json(RULES))
    with pytest.raises(ValueError, match='no segment "nope" in the program'):
        engine.segment_members("nope")
    with pytest.raises(ValueError, match='no segment "nope" in the program'):
        engine.segment_size("nope")


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


def test_python_store_states_carry_memberships_and_answer_queries_with_a_method():
    store = DictStore()
    engine = nudge.Engine(nudge.Program.from_json(RULES), store=store)
    engine.process([("zoe", "app_session", T0, "", {"minutes": 40}),
                    ("ann", "app_session", T0 + HOUR, "", {"minutes": 31})], now=T0 + HOUR)
    assert store.states["ann"].segments == {"engaged": utc(T0 + HOUR)}
    assert store.states["zoe"].segments == {"engaged": utc(T0)}
    assert store.states["ann"].merged_into is None
    with pytest.raises(nudge.CallbackError, match='does not answer segment queries'):
        engine.segment_members("engaged")
    # The method's answer comes back sorted, whatever order the store lists ids in.
    store.segment_members = lambda name: [i for i, s in store.states.items()
                                          if name in s.segments]
    assert engine.segment_members("engaged") == ["ann", "zoe"]
    assert engine.segment_size("engaged") == 2
