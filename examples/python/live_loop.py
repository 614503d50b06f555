#!/usr/bin/env python3
"""A small shop's automation job: events arrive, the clock ticks, a sink "sends" by printing.

    PYTHONPATH=build/bindings/python /usr/bin/python3 examples/python/live_loop.py

A real job would read events from its queue and call engine.advance(now) from a scheduler with
the real clock; here a simulated clock walks through two weeks so the run is reproducible.
"""
import datetime as dt

import nudge

RULES = {
    "version": 1,
    "rules": [
        {"id": "welcome", "on": {"event": "signup"},
         "then": [{"do": "send_email", "arg": "welcome_1"},
                  {"do": "send_email", "arg": "welcome_2", "delay": "2d",
                   "if": {"not_happened": {"event": "purchase", "since_trigger": True}}}]},
        {"id": "abandoned_cart", "on": {"event": "cart"}, "delay": "1h",
         "if": {"not_happened": {"event": "purchase", "since_trigger": True}},
         "cap": {"max": 1, "per": "24h"},
         "then": [{"do": "send_email", "arg": "cart_reminder",
                   "params": {"subject": "You left something behind"}}]},
        {"id": "thanks", "on": {"event": "purchase"},
         "then": [{"do": "set_status", "arg": "customer"},
                  {"do": "send_sms", "arg": "thanks"}]},
    ],
}


class PrintingSink:
    """Delivers by printing; a real sink would call the mail/SMS provider and drop duplicates
    by idempotency_key."""

    def __init__(self):
        self.sent = set()

    def __call__(self, actions):
        for a in actions:
            if a.idempotency_key in self.sent:
                continue
            self.sent.add(a.idempotency_key)
            print(f"  {a.ts:%Y-%m-%d %H:%M} {a.action:<11} {a.arg:<14} to {a.contact}"
                  + (f"  {a.params}" if a.params else ""))


def main():
    start = dt.datetime(2024, 3, 4, 9, 0, tzinfo=dt.timezone.utc)
    engine = nudge.Engine(nudge.Program.from_json(RULES), sink=PrintingSink())
    engine.upsert_contact("ana@example.com", details={"language": "pl"}, consent={"email": True})
    # (hours after start, contact, type, key)
    incoming = [(0, "ana@example.com", "signup", ""), (1, "bob@example.com", "signup", ""),
                (5, "ana@example.com", "cart", "sku-17"), (5.5, "ana@example.com", "purchase", "o-1"),
                (30, "bob@example.com", "cart", "sku-3"), (31, "bob@example.com", "cart", "sku-4")]
    hour = dt.timedelta(hours=1)
    for tick in range(14 * 24):  # an hourly job for two weeks
        now = start + tick * hour
        batch = [{"contact": c, "type": t, "ts": start + h * hour, "key": k}
                 for h, c, t, k in incoming if now - hour < start + h * hour <= now]
        if batch:
            print(f"{now:%Y-%m-%d %H:%M}: {len(batch)} event(s)")
        engine.process(batch, now=now)
    print("per-rule statistics:")
    for rule, s in engine.stats().items():
        print(f"  {rule:<15} triggered {s['triggered']}, passed {s['passed']}, "
              f"emitted {s['emitted']}")
    print("ana:", engine.contact("ana@example.com"))


if __name__ == "__main__":
    main()
