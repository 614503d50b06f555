"""python3 -m nudge.distributed replay --scheduler ADDRESS --partitions N ...: `nudge replay` on a
Dask cluster, with the same options, output (the actions CSV, byte for byte), summary and --stats
tables on standard error, and exit codes (0 ok, 1 bad input or rules, 2 usage)."""
from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_INPUT, EXIT_USAGE = 0, 1, 2


def _time(t) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _dropped(d: dict) -> int:
    return d["no_consent"] + d["capped"] + d["off_hours"]


def _deferred(d: dict) -> int:
    return d["deferred_cap"] + d["deferred_hours"]


def print_stats(stats: dict) -> None:
    """`nudge replay --stats`' rule table (src/cli/replay.cpp)."""
    width = max([4] + [len(r) for r in stats])
    row = "{:<{w}} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}  {:<20}  {}\n"
    out = row.format("rule", "triggered", "passed", "failed", "suppressed", "emitted", "dropped",
                     "deferred", "first", "last", w=width)
    for s in stats.values():
        out += row.format(s["rule"], s["triggered"], s["passed"], s["failed"], s["suppressed"],
                          s["emitted"], _dropped(s["delivery"]), _deferred(s["delivery"]),
                          _time(s["first"]), _time(s["last"]), w=width)
    sys.stderr.write(out)


def print_workflow_stats(stats: dict) -> None:
    """`nudge replay --stats`' workflow table."""
    if not stats:
        return
    width = 13
    for w in stats.values():
        for st in w["steps"].values():
            width = max(width, len(w["workflow"]) + 1 + len(st["step"]))
    row = "{:<{w}} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  {:<20}  {}\n"
    out = row.format("workflow/step", "entered", "completed", "exited", "sent", "dropped",
                     "deferred", "opened", "clicked", "inside", "first", "last", w=width)
    for w in stats.values():
        out += row.format(w["workflow"], w["entered"], w["completed"], w["exited"], w["sent"],
                          _dropped(w["delivery"]), _deferred(w["delivery"]), w["opened"],
                          w["clicked"], w["active"], _time(w["first"]), _time(w["last"]), w=width)
        for st in w["steps"].values():
            out += row.format(w["workflow"] + "/" + st["step"], st["reached"], "-", "-", st["sent"],
                              _dropped(st["delivery"]), _deferred(st["delivery"]), st["opened"],
                              st["clicked"], st["waiting"], _time(st["first"]), _time(st["last"]),
                              w=width)
    sys.stderr.write(out)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m nudge.distributed",
        description="nudge replay on a Dask cluster, partitioned by contact (docs/scale.md)")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("replay", help="Replay an event log through the rules on a Dask cluster "
                       "and print the due actions as CSV (the same as nudge replay's)")
    r.add_argument("--scheduler", required=True, help="The Dask scheduler's address "
                   "(tcp://host:8786)")
    r.add_argument("--partitions", type=int, required=True,
                   help="Partitions by contact (a few per worker core)")
    r.add_argument("--rules", required=True, help="Rule file (JSON)")
    r.add_argument("--contacts", help="Contacts (.csv or .jsonl)")
    r.add_argument("--events", required=True,
                   help="Events (.csv or .jsonl, optionally .gz), sorted by time; a path every "
                   "worker can open")
    r.add_argument("--strict", action="store_true",
                   help="Refuse CSV event columns other than ts, contact, type, key, value")
    r.add_argument("--until", default="", help="Fire timers up to this time (ISO-8601, epoch "
                   "seconds or now: the wall clock); default as nudge replay's")
    r.add_argument("--out", default="", help="Write the actions here (default: standard output)")
    r.add_argument("--time-format", default="iso", choices=["iso", "epoch"])
    r.add_argument("--stats", action="store_true", help="Per-rule and per-workflow tables on "
                   "standard error")
    r.add_argument("--on-error", default="stop", choices=["stop", "skip"])
    r.add_argument("--rejects", default="", help="With --on-error skip: write refused lines here")
    r.add_argument("--batch", type=int, default=16384, help="Events per engine batch")
    r.add_argument("--range-bytes", type=int, default=None,
                   help="Bytes of the event log per read task (default: two ranges per worker "
                   "thread, 1 to 16 MiB each)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    import nudge
    from nudge import _core
    import nudge.distributed as nd

    until = None
    if args.until:
        until, problem = _core._distributed_parse_until(args.until)
        if problem:
            print(problem, file=sys.stderr)
            return EXIT_USAGE
    if args.rejects and args.on_error != "skip":
        print("--rejects needs --on-error skip", file=sys.stderr)
        return EXIT_USAGE
    if args.partitions < 1:
        print("--partitions must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    # The rules first, as nudge replay reports them (each problem, then the count), before any
    # connection to the scheduler.
    try:
        nudge.Program.load(args.rules)
    except nudge.RuleError as e:
        for d in e.diagnostics:
            print(str(d), file=sys.stderr)
        n = len(e.diagnostics)
        print(f"{n} error{'' if n == 1 else 's'}", file=sys.stderr)
        return EXIT_INPUT

    import logging

    from distributed import Client

    # Standard error is nudge replay's: Dask's and asyncio's own chatter (a scheduler comm timing
    # out while the client closes, a worker restarted) stays out of it. Failures still reach the
    # user as the errors replay() raises.
    for name in ("asyncio", "distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    try:
        client = Client(args.scheduler, timeout=30)
    except OSError as e:
        print(f"--scheduler {args.scheduler}: {e}", file=sys.stderr)
        return EXIT_INPUT
    try:
        r = nd.replay(args.rules, args.events, args.contacts, client=client,
                      partitions=args.partitions, until=until, out=args.out or "-",
                      time_format=args.time_format, on_error=args.on_error,
                      rejects=args.rejects or None, strict=args.strict, batch_events=args.batch,
                      range_bytes=args.range_bytes)
    except (nudge.ReadError, nudge.RuleError, nudge.InputError, nudge.RuleCycleError,
            ValueError, OSError) as e:
        print(str(e), file=sys.stderr)
        return EXIT_INPUT
    finally:
        client.close()
    if args.on_error == "skip" and not args.rejects:
        for p in r.problems:
            print(f"rejected: {p[1]}", file=sys.stderr)
    if args.stats:
        print_stats(r.stats)
        print_workflow_stats(r.workflow_stats)
    print(f"{r.events_read} events read, {r.rejected} rejected, {r.action_count} actions "
          f"(until {_time(r.until)})", file=sys.stderr)
    line = f"{r.pending} timer{'' if r.pending == 1 else 's'} pending"
    if r.pending > 0:
        line += (f" past {'--until' if until is not None else 'the default end'} "
                 f"({_time(r.until)}), the last due at {_time(r.last_pending)}")
    if r.recurring_pending > 0:
        line += f"; {r.recurring_pending} recurring (yearly dates, score decay) not counted"
    print(line, file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
