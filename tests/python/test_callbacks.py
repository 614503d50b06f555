"""Python stores and sinks: called with the GIL, their exceptions propagate unchanged, and a
failing batch leaves no trace."""
import copy
import pickle

import pytest

import nudge
from conftest import DAY, T0, rows

RULES = {
    "rules": [
        {"id": "welcome", "on": {"event": "signup"},
         "then": [{"do": "send_email", "arg": "welcome_1"},
                  {"do": "send_email", "arg": "welcome_2", "delay": "2d"}]},
    ]
}


class DictStore:
    """A store over a dict: what a host would write over its database."""

    def __init__(self):
        self.states = {}
        self.calls = []

    def load(self, contact_id):
        self.calls.append(("load", contact_id))
        s = self.states.get(contact_id)
        return None if s is None else s.copy()

    def save(self, states):
        self.calls.append(("save", [s.id for s in states]))
        for s in states:
            self.states[s.id] = s

    def due(self, now):
        self.calls.append(("due", now))
        return [cid for cid, s in self.states.items() if s.next_due is not None and s.next_due <= now]


class Boom(Exception):
    pass


def test_python_store_receives_states_and_drives_advance():
    store = DictStore()
    engine = nudge.Engine(nudge.Program.from_json(RULES), store=store)
    assert engine.store is store
    engine.process([("c1", "signup", T0)], now=T0)
    state = store.states["c1"]
    assert isinstance(state, nudge.ContactState)
    assert state.pending_timers == 1
    assert state.next_due.timestamp() == T0 + 2 * DAY
    assert repr(state) == "ContactState(id='c1', pending_timers=1)"
    assert rows(engine.advance(T0 + 2 * DAY)) == [
        (T0 + 2 * DAY, "c1", "welcome", "send_email", "welcome_2")]
    assert store.states["c1"].next_due is None
    assert engine.contact("c1").id == "c1"


def test_contact_state_copies_but_does_not_pickle():
    store = DictStore()
    engine = nudge.Engine(nudge.Program.from_json(RULES), store=store)
    engine.process([("c1", "signup", T0)], now=T0)
    s = store.states["c1"]
    assert copy.copy(s) == s and copy.deepcopy(s) == s and s.copy() is not s
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_sink_gets_each_batch_as_a_list():
    got = []
    engine = nudge.Engine(nudge.Program.from_json(RULES), sink=got.append)
    returned = engine.process([("c1", "signup", T0)], now=T0)
    assert got == [returned]
    assert isinstance(got[0], list) and isinstance(got[0][0], nudge.DueAction)
    engine.advance(T0 + DAY)  # nothing due: the sink is not called
    assert len(got) == 1


@pytest.mark.parametrize("where", ["load", "save", "due"])
def test_store_exception_propagates_as_itself_and_the_batch_leaves_no_trace(where):
    store = DictStore()
    got = []
    engine = nudge.Engine(nudge.Program.from_json(RULES), store=store, sink=got.append)
    engine.process([("c1", "signup", T0)], now=T0)
    before = {k: v.copy() for k, v in store.states.items()}
    stats_before = engine.stats()
    delivered_before = len(got)
    error = Boom(where)

    def fail(*args):
        raise error

    setattr(store, where, fail)
    with pytest.raises(Boom) as info:
        engine.process([("c1", "signup", T0 + DAY), ("c2", "signup", T0 + DAY)], now=T0 + DAY)
    assert info.value is error
    assert store.states == before
    assert engine.stats() == stats_before
    if where != "save":
        assert len(got) == delivered_before  # nothing delivered
    del store.__dict__[where]
    # The same batch again, with the store working, gives the full result.
    assert len(engine.process([("c1", "signup", T0 + DAY), ("c2", "signup", T0 + DAY)],
                              now=T0 + DAY)) == 2


def test_sink_exception_propagates_as_itself_and_state_is_unchanged():
    store = DictStore()
    error = KeyError("smtp down")
    calls = []

    def sink(actions):
        calls.append(actions)
        raise error

    engine = nudge.Engine(nudge.Program.from_json(RULES), store=store, sink=sink)
    with pytest.raises(KeyError) as info:
        engine.process([("c1", "signup", T0)], now=T0)
    assert info.value is error
    assert len(calls) == 1
    assert store.states == {}
    assert engine.stats()["welcome"]["triggered"] == 0
    assert engine.contact("c1") is None


def test_store_returning_a_wrong_type_is_a_callback_error():
    class Bad(DictStore):
        def load(self, contact_id):
            return {"id": contact_id}

    engine = nudge.Engine(nudge.Program.from_json(RULES), store=Bad())
    with pytest.raises(nudge.CallbackError) as info:
        engine.process([("c1", "signup", T0)], now=T0)
    assert str(info.value) == ('store.load failed for contact "c1": store.load must return a '
                               'ContactState (as handed to save) or None, got dict')
    assert (info.value.callback, info.value.contact) == ("store.load", "c1")


def test_engine_checks_store_and_sink_shapes():
    program = nudge.Program.from_json(RULES)
    with pytest.raises(TypeError, match=r"store: object has no method load\(\)"):
        nudge.Engine(program, store=object())
    with pytest.raises(TypeError, match="sink: expected a callable"):
        nudge.Engine(program, sink=42)


def test_callbacks_run_while_other_python_threads_can_run():
    import threading

    program = nudge.Program.from_json(RULES)
    results = []

    def work(i):
        engine = nudge.Engine(program, sink=lambda actions: None)
        results.append(len(engine.process([("c%d" % j, "signup", T0) for j in range(1000)],
                                          now=T0 + 3 * DAY)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [2000] * 4
