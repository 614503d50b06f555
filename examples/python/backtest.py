#!/usr/bin/env python3
"""Backtest a rule file on an exported event log: print per-rule statistics and write the due
actions as CSV.

    PYTHONPATH=build/bindings/python /usr/bin/python3 examples/python/backtest.py \\
        examples/rules/restaurant_loyalty.rules.json examples/rules/restaurant_loyalty.events.csv \\
        --out actions.csv

The events file is CSV (ts,contact,type,key,value) or JSON Lines; it is read and evaluated in
C++ (Engine.replay). Timers run to --until (default: the last event plus the longest delay).
"""
import argparse
import sys

import nudge


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rules", help="rule file (JSON)")
    parser.add_argument("events", help="events (.csv or .jsonl), sorted by time")
    parser.add_argument("--contacts", help="contacts (.csv or .jsonl)")
    parser.add_argument("--until", help="fire timers up to this time (ISO-8601 or epoch seconds)")
    parser.add_argument("--out", default="actions.csv", help="where to write the due actions")
    args = parser.parse_args(argv)

    try:
        program = nudge.Program.load(args.rules)
    except nudge.RuleError as e:
        print(e, file=sys.stderr)  # every problem, each with file:line:column and JSON pointer
        return 1
    until = int(args.until) if args.until and args.until.isdigit() else args.until
    engine = nudge.Engine(program)
    result = engine.replay(args.events, contacts=args.contacts, until=until)
    result.write_csv(args.out)

    print(f"{result.events_read} events, {len(result)} actions up to "
          f"{result.until.isoformat()} -> {args.out}")
    print(f"{'rule':<24}{'triggered':>10}{'passed':>8}{'failed':>8}{'suppr.':>8}{'emitted':>9}")
    for rule, s in engine.stats().items():
        print(f"{rule:<24}{s['triggered']:>10}{s['passed']:>8}{s['failed']:>8}"
              f"{s['suppressed']:>8}{s['emitted']:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
