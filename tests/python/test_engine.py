"""Engine: events as dicts or tuples, times in and out, due actions, contacts and statistics."""
import datetime as dt

import pytest

import nudge
from conftest import DAY, HOUR, T0, UTC, rows, utc

RULES = {
    "version": 1,
    "event_types": ["PURCHASE"],
    "rules": [
        {"id": "welcome", "on": {"event": "signup"},
         "then": [{"do": "send_email", "arg": "welcome_1", "params": {"subject": "Hi"}},
                  {"do": "send_email", "arg": "welcome_2", "delay": "2d"}]},
        {"id": "big_spender", "on": {"event": "PURCHASE"},
         "if": {"happened": {"event": "PURCHASE", "at_least": 2}},
         "then": [{"do": "add_tag", "arg": "repeat", "notify": True}]},
    ],
}


@pytest.fixture
def engine():
    return nudge.Engine(nudge.Program.from_json(RULES))


def test_engine_process_accepts_tuples_and_dicts_alike(engine):
    due = engine.process([("c1", "signup", T0)], now=T0)
    other = nudge.Engine(engine.program)
    due2 = other.process([{"contact": "c1", "type": "signup", "ts": T0}], now=T0)
    assert rows(due) == rows(due2) == [(T0, "c1", "welcome", "send_email", "welcome_1")]
    assert due == due2


def test_due_action_fields_and_repr(engine):
    (a,) = engine.process([("c1", "signup", T0)], now=T0)
    assert a.contact == "c1"
    assert a.rule == "welcome"
    assert a.action == "send_email"
    assert a.arg == "welcome_1"
    assert a.params == {"subject": "Hi"}
    assert a.ts == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert a.ts.tzinfo is not None and a.ts.utcoffset() == dt.timedelta(0)
    assert a.ts_epoch == T0
    assert a.is_external
    assert isinstance(a.idempotency_key, int)
    assert repr(a) == ("DueAction(contact='c1', rule='welcome', action='send_email', "
                       "arg='welcome_1', ts=2024-01-01T00:00:00Z, params={'subject': 'Hi'})")
    assert a.to_dict() == {"contact": "c1", "rule": "welcome", "action": "send_email",
                           "arg": "welcome_1", "params": {"subject": "Hi"},
                           "ts": utc(T0), "idempotency_key": a.idempotency_key}


def test_engine_advance_fires_delayed_actions_at_their_time(engine):
    engine.process([("c1", "signup", T0)], now=T0)
    assert engine.advance(T0 + 2 * DAY - 1) == []
    (a,) = engine.advance(dt.datetime(2024, 1, 3, tzinfo=UTC))
    assert (a.arg, a.ts) == ("welcome_2", dt.datetime(2024, 1, 3, tzinfo=UTC))
    assert engine.advance(T0 + 30 * DAY) == []


def test_times_accept_aware_datetimes_in_any_zone_floats_and_iso_text():
    program = nudge.Program.from_json(RULES)
    warsaw = dt.timezone(dt.timedelta(hours=1))
    for at in (T0, float(T0) + 0.75, dt.datetime(2024, 1, 1, 1, 0, tzinfo=warsaw),
               "2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00"):
        (a,) = nudge.Engine(program).process([("c1", "signup", at)], now=at)
        assert a.ts_epoch == T0, at


def test_naive_datetime_is_refused_with_a_clear_error(engine):
    naive = dt.datetime(2024, 1, 1)
    with pytest.raises(ValueError, match=r"^now: naive datetime 2024-01-01 00:00:00 has no time "
                                         r"zone; nudge never guesses one"):
        engine.process([], now=naive)
    with pytest.raises(ValueError, match=r"^events\[1\]\.ts: naive datetime"):
        engine.process([("c1", "signup", T0), ("c2", "signup", naive)], now=T0)
    assert engine.contact("c1") is None  # the batch left no trace


def test_bad_events_name_the_event_and_field(engine):
    with pytest.raises(TypeError, match=r"events\[0\]\.contact: expected str or int, got float"):
        engine.process([(1.5, "signup", T0)], now=T0)
    with pytest.raises(ValueError, match=r"events\[0\]: a tuple event is \(contact, type, ts"):
        engine.process([("c1", "signup")], now=T0)
    # Another field is a prop, as another column of an event file: "time" is not the time.
    with pytest.raises(ValueError, match=r'events\[0\]: missing "ts"'):
        engine.process([{"contact": "c1", "type": "signup", "time": T0}], now=T0)
    with pytest.raises(ValueError, match=r'events\[0\]: missing "ts"'):
        engine.process([{"contact": "c1", "type": "signup"}], now=T0)
    # The event's time is "ts", as in the event files; the old key is refused, not read.
    with pytest.raises(ValueError, match=r'events\[0\]: unknown field "at" \(the event\'s time is "ts"'):
        engine.process([{"contact": "c1", "type": "signup", "at": T0}], now=T0)
    with pytest.raises(TypeError, match=r"events\[0\]\.ts: expected a timezone-aware datetime"):
        engine.process([("c1", "signup", None)], now=T0)
    with pytest.raises(TypeError, match=r"now: .* got bool"):
        engine.process([], now=True)


def test_engine_input_error_names_contact_and_event(engine):
    with pytest.raises(nudge.InputError) as info:
        engine.process([("c1", "signup", T0), ("c1", "signup", T0 - 10)], now=T0)
    assert isinstance(info.value, ValueError)
    assert (info.value.contact, info.value.event_index) == ("c1", 1)
    assert engine.contact("c1") is None


def test_events_with_keys_props_and_custom_types_and_internal_notify(engine):
    due = engine.process(
        [("c1", "PURCHASE", T0, "o1", {"amount": 19.99}),
         {"contact": "c1", "type": "PURCHASE", "ts": T0 + HOUR, "key": "o2",
          "props": {"amount": 5, "gift": True, "at": utc(T0)}}],
        now=T0 + HOUR)
    assert rows(due) == [(T0 + HOUR, "c1", "big_spender", "add_tag", "repeat")]
    assert not due[0].is_external
    assert list(engine.contact("c1").tags) == ["repeat"]


def test_events_may_come_from_any_iterable(engine):
    gen = (("c%d" % i, "signup", T0) for i in range(3))
    assert [a.contact for a in engine.process(gen, now=T0)] == ["c0", "c1", "c2"]


def test_engine_stats_are_plain_dicts_in_program_order(engine):
    engine.process([("c1", "signup", T0), ("c2", "signup", T0 + HOUR)], now=T0 + 3 * DAY)
    stats = engine.stats()
    assert list(stats) == ["welcome", "big_spender"]
    assert stats["welcome"] == {"rule": "welcome", "triggered": 2, "passed": 2, "failed": 0,
                                "suppressed": 0, "emitted": 4, "first": utc(T0),
                                "last": utc(T0 + HOUR + 2 * DAY),
                                "delivery": {"no_consent": 0, "capped": 0, "off_hours": 0,
                                             "deferred_cap": 0, "deferred_hours": 0}}
    assert stats["big_spender"]["triggered"] == 0 and stats["big_spender"]["first"] is None


def test_contact_snapshot_and_upsert(engine):
    assert engine.contact("c9") is None
    engine.upsert_contact("c9", {"details": {"company": "Ekomed", "employees": 12,
                                             "vip": True, "since": utc(T0)}},
                          status="customer", stage="trial", owner="anna", score=7.5,
                          tags={"VIP": T0}, groups=["newsletter"], consent={"email": True},
                          time_zone="Europe/Warsaw")
    c = engine.contact("c9")
    assert c.id == "c9"
    assert c.details == {"company": "Ekomed", "employees": 12, "vip": True, "since": utc(T0)}
    assert c.tags == {"VIP": utc(T0)}
    assert (c.status, c.stage, c.owner, c.score, c.time_zone) == (
        "customer", "trial", "anna", 7.5, "Europe/Warsaw")
    assert c.groups == frozenset({"newsletter"})
    assert c.consent == {"email": True}
    assert c.to_dict()["groups"] == frozenset({"newsletter"})
    # Fields not given keep their values.
    engine.upsert_contact("c9", stage="active")
    c2 = engine.contact("c9")
    assert (c2.stage, c2.status, c2.owner) == ("active", "customer", "anna")
    assert repr(c2).startswith("Contact(id='c9', status='customer', stage='active'")


def test_upsert_contact_refuses_unknown_fields(engine):
    with pytest.raises(ValueError, match=r'unknown contact field "colour"'):
        engine.upsert_contact("c1", colour="red")
    assert engine.contact("c1") is None


def test_upsert_keeps_history_and_timers(engine):
    engine.process([("c1", "signup", T0)], now=T0)
    engine.upsert_contact("c1", status="customer")
    assert [a.arg for a in engine.advance(T0 + 2 * DAY)] == ["welcome_2"]


def test_engine_refuses_unknown_contacts_when_asked():
    engine = nudge.Engine(nudge.Program.from_json(RULES), create_unknown_contacts=False)
    with pytest.raises(nudge.InputError, match="unknown contact"):
        engine.process([("c1", "signup", T0)], now=T0)
    engine.upsert_contact("c1")
    assert len(engine.process([("c1", "signup", T0)], now=T0)) == 1


def test_engine_refuses_too_many_events_for_one_contact_in_one_batch():
    engine = nudge.Engine(nudge.Program.from_json(RULES), max_events_per_contact=2)
    events = [("c1", "signup", T0), ("c2", "signup", T0), ("c1", "signup", T0),
              ("c1", "signup", T0)]
    with pytest.raises(nudge.InputError) as e:
        engine.process(events, now=T0)
    assert str(e.value) == (
        'event 3 (contact "c1"): more than 2 events for one contact in one batch '
        "(engine_options::max_events_per_contact); split the batch")
    assert engine.contact("c1") is None
    assert len(engine.process(events[:2], now=T0)) == 2


def test_idempotency_keys_are_stable_across_replays():
    program = nudge.Program.from_json(RULES)
    events = [("c1", "signup", T0), ("c2", "signup", T0)]
    a = nudge.Engine(program).process(events, now=T0 + 3 * DAY)
    b = nudge.Engine(program).process(events, now=T0 + 3 * DAY)
    assert [x.idempotency_key for x in a] == [x.idempotency_key for x in b]
    assert len({x.idempotency_key for x in a}) == 4
    assert {x for x in a} == set(b)


def test_upsert_contacts_in_one_call_all_or_none(engine):
    engine.upsert_contact("c1", owner="anna")
    engine.upsert_contacts([{"id": "c1", "status": "customer"},
                            {"id": "c2", "details": {"company": "Medix"}},
                            {"id": "c2", "stage": "trial"}])
    c1, c2 = engine.contact("c1"), engine.contact("c2")
    assert (c1.owner, c1.status) == ("anna", "customer")
    assert (c2.details, c2.stage) == ({"company": "Medix"}, "trial")
    with pytest.raises(ValueError, match='unknown contact field "colour"'):
        engine.upsert_contacts([{"id": "c3"}, {"id": "c4", "colour": "red"}])
    assert engine.contact("c3") is None
    with pytest.raises(ValueError, match='item 0 has no "id"'):
        engine.upsert_contacts([{"status": "lead"}])
