"""Timelines and the delivery policy from Python: explain() and the policy statistics."""
import datetime as dt
import json

import nudge

UTC = dt.timezone.utc

RULES = """{
  "event_types": ["probe"],
  "timeline": {"size": 10},
  "delivery": {"default_time_zone": "Europe/Warsaw",
               "quiet_hours": {"from": "21:00", "to": "08:00"}},
  "rules": [{"id": "promo", "on": {"event": "probe"},
             "then": [{"do": "send_email", "arg": "promo"}]}]
}"""


def test_explain_shows_a_deferral_and_the_send():
    engine = nudge.Engine(nudge.Program.from_json(RULES))
    engine.upsert_contact("ann", {"consent": {"email": True}})
    engine.upsert_contact("bob")
    t = dt.datetime(2024, 1, 10, 20, 30, tzinfo=UTC)  # 21:30 in Warsaw: quiet
    engine.process([("ann", "probe", t), ("bob", "probe", t)], t)
    due = engine.advance(t + dt.timedelta(days=1))
    assert [(a.contact, a.ts) for a in due] == [("ann", dt.datetime(2024, 1, 11, 7, tzinfo=UTC))]
    entries = engine.explain("ann")
    assert [e["what"] for e in entries] == [
        "triggered", "condition_passed", "action_deferred", "action_emitted"]
    assert entries[2]["reason"] == "quiet_hours"
    assert entries[2]["until"] == dt.datetime(2024, 1, 11, 7, tzinfo=UTC)
    assert entries[3]["text"] == "rule promo: action 0 send_email promo emitted"
    assert engine.explain("bob")[-1]["reason"] == "no_consent"
    assert json.loads(engine.explain("bob", json=True))["entries"][-1]["reason"] == "no_consent"
    assert engine.explain("nobody") is None
    stats = engine.stats()["promo"]
    assert (stats["delivery"]["deferred_hours"], stats["delivery"]["no_consent"],
            stats["emitted"]) == (1, 1, 1)
