"""nudge.distributed: a backtest partitioned by contact on Dask distributed, identical to one
process (`nudge replay`) byte for byte.

    from dask.distributed import Client
    import nudge.distributed
    client = Client("tcp://scheduler:8786")
    r = nudge.distributed.replay("rules.json", "events.csv", "contacts.csv",
                                 client=client, partitions=64, out="actions.csv")
    r.stats["abandoned_cart"]["emitted"]

How it runs (docs/scale.md has the plan for a year of a large shop):

1. The log is cut into byte ranges at record boundaries; a cheap pass counts line breaks and
   quotes per range, so each task knows its first line number and whether it starts inside a
   quoted CSV field.
2. The identity pass: every range is read (the same reader and checks as `nudge replay`) and
   its `identify` events (visitor, known id) come back. The client joins them into merge
   groups; a group's canonical id is its smallest id (bytewise). All ids of one contact thus
   share a partition: XXH3 of the canonical id modulo `partitions`, the same on every machine
   and every run.
3. The shuffle: each range is read again, each event encoded into its partition's block.
   Problems name the file and the line of the whole file; with on_error="stop" the earliest bad
   line of all ranges fails the run, as in one process.
4. Each partition replays its contacts (C++, the GIL released) with the instants the whole log
   decides: the contacts' upsert at the log's first event, and the end (`until`, or the default
   end and its extensions, found over all partitions in rounds).
5. The partitions' action lines, each sorted by (ts, contact), are merged k-way by (ts,
   contact) into `nudge replay`'s CSV; statistics are summed.

Every task is pure: a worker lost mid-run makes Dask recompute what it held.
"""
from __future__ import annotations

import datetime as _dt
import io
import os
import time
from typing import Any, Callable, Optional

from .. import _core
from . import _ranges

__all__ = ["replay", "DistributedReplay", "partition_of", "DEFAULT_RANGE_BYTES"]

#: Bytes of the event log per read task by default.
DEFAULT_RANGE_BYTES = 16 << 20

# nudge::max_input_time (nudge/time.hpp): no end goes past it.
_MAX_INPUT_TIME = 247_090_953_599


def partition_of(contact_id: str, partitions: int) -> int:
    """The partition of a canonical contact id: XXH3-64 of its UTF-8 bytes modulo `partitions`."""
    return _core._distributed_partition_of(contact_id, partitions)


def _to_datetime(epoch: Optional[int]):
    if epoch is None:
        return None
    return _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(seconds=epoch)


class DistributedReplay:
    """The outcome of replay(): the same figures as nudge.ReplayResult and `nudge replay`."""

    def __init__(self, **fields: Any) -> None:
        #: A pandas DataFrame, one row per action (columns ts, contact, rule, action, arg as in
        #: the CSV; ts a UTC datetime), when replay() had no `out`; else None.
        self.actions = fields["actions"]
        self.action_count: int = fields["action_count"]
        #: Per rule (program order): triggered, passed, failed, suppressed, emitted, delivery
        #: {no_consent, capped, off_hours, deferred_cap, deferred_hours}, first, last — the sums
        #: over partitions, equal to one process's Engine.stats().
        self.stats: dict = fields["stats"]
        #: Per workflow (and its "steps"), as Engine.workflow_stats(), summed over partitions.
        self.workflow_stats: dict = fields["workflow_stats"]
        self.events_read: int = fields["events_read"]
        self.contacts_read: int = fields["contacts_read"]
        self.rejected: int = fields["rejected"]
        self.until: _dt.datetime = fields["until"]
        self.pending: int = fields["pending"]
        self.last_pending: Optional[_dt.datetime] = fields["last_pending"]
        self.recurring_pending: int = fields["recurring_pending"]
        #: How many times the default end was extended (each one a round over partitions).
        self.extensions: int = fields["extensions"]
        #: Seconds per stage, each ending when its name is reached: "counted" (line breaks and
        #: quotes per range), "identified" (the identity pass), "shuffled" (the events read again
        #: and cut by partition), "replayed" (the partitions, every round), "merged" (the k-way
        #: merge and the output).
        self.timings: dict = fields["timings"]
        #: Read tasks (byte ranges of the log) and the bytes of encoded events they shuffled.
        self.ranges: int = fields["ranges"]
        self.shuffle_bytes: int = fields["shuffle_bytes"]
        #: Per partition: events, bytes of encoded events it received,
        #: actions, and the CPU seconds of its replay (the last round's).
        self.partitions: list = fields["partitions"]
        #: The refused lines (with on_error="skip"): (line, "file:line: reason", reason, text,
        #: file), contacts first, as `nudge replay` reports them.
        self.problems: list = fields["problems"]

    def __repr__(self) -> str:
        return (
            f"DistributedReplay(actions={self.action_count}, events_read={self.events_read}, "
            f"contacts_read={self.contacts_read}, rejected={self.rejected}, "
            f"until={self.until.strftime('%Y-%m-%dT%H:%M:%SZ')})"
        )


def _raise_problem(problem) -> None:
    line, message, reason, _text, file = problem
    e = _core.ReadError(message)
    e.file, e.line, e.reason = file, line, reason
    raise e


def _merge_stats(per_partition: list[list[dict]]) -> list[dict]:
    """Sums of counters; first = the earliest, last = the latest; names kept."""
    merged: list[dict] = []
    for stats in per_partition:
        if not merged:
            merged = [_copy(s) for s in stats]
            continue
        for m, s in zip(merged, stats):
            _add(m, s)
    return merged


def _copy(d):
    if isinstance(d, dict):
        return {k: _copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_copy(v) for v in d]
    return d


def _add(m: dict, s: dict) -> None:
    for k, v in s.items():
        if k == "first":
            m[k] = v if m[k] is None else (m[k] if v is None else min(m[k], v))
        elif k == "last":
            m[k] = v if m[k] is None else (m[k] if v is None else max(m[k], v))
        elif isinstance(v, dict):
            _add(m[k], v)
        elif isinstance(v, list):
            for a, b in zip(m[k], v):
                _add(a, b)
        elif isinstance(v, int) and not isinstance(v, bool):
            m[k] += v


def _with_datetimes(d):
    if isinstance(d, dict):
        return {
            k: (_to_datetime(v) if k in ("first", "last") else _with_datetimes(v))
            for k, v in d.items()
        }
    if isinstance(d, list):
        return [_with_datetimes(v) for v in d]
    return d


def _frame(csv_bytes: bytes, time_format: str):
    """The actions CSV as a DataFrame: text columns as written, ts as UTC datetimes."""
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(csv_bytes), dtype=str, keep_default_na=False, na_filter=False)
    if time_format == "epoch":
        frame["ts"] = pd.to_datetime(frame["ts"].astype("int64"), unit="s", utc=True)
    else:
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="%Y-%m-%dT%H:%M:%SZ")
    return frame


def replay(
    rules,
    events,
    contacts=None,
    *,
    client,
    partitions: int,
    until=None,
    out=None,
    time_format: str = "iso",
    on_error: str = "stop",
    rejects=None,
    strict: bool = False,
    batch_events: int = 16384,
    range_bytes: Optional[int] = None,
    max_extensions: int = 1000,
    on_stage: Optional[Callable[[str], None]] = None,
) -> DistributedReplay:
    """Replays the event log `events` (CSV or JSON Lines, sorted by time; a path every worker
    can open) through the rule file at path `rules` (the workers compile its text), with the
    contacts file `contacts` (a path every worker can open), on the Dask
    `client`'s workers in `partitions` partitions by contact. The result is `nudge replay`'s, byte
    for byte: with `out` the actions CSV is written there (under out + ".part", renamed at the
    end); without it DistributedReplay.actions is a pandas DataFrame.

    until: datetime, epoch seconds or an ISO-8601 string (as Engine.replay's); default: the last
    event's time plus the rules' longest delay, extended while timers are pending, as `nudge
    replay` does. time_format, on_error ("stop" | "skip"), rejects (a file, with skip), strict
    and batch_events: as `nudge replay`'s --time-format, --on-error, --rejects, --strict, --batch.
    range_bytes: bytes of the log per read task; default: the log cut in two ranges per worker
    thread, each at most DEFAULT_RANGE_BYTES and at least 1 MiB (a gzipped log is read by one
    task).
    on_stage: called with "counted", "identified", "shuffled", "replayed", "merged" as each
    stage ends (DistributedReplay.timings has their seconds).

    Raises nudge.ReadError naming the file and the line (of the whole file) for a bad line with
    on_error="stop", nudge.RuleError for bad rules, ValueError for rules whose state spans
    contacts (round-robin owner picks) and for bad arguments.
    """
    import distributed as dask_distributed  # Dask's, not this package

    if partitions < 1:
        raise ValueError(
            f"nudge.distributed.replay: partitions must be at least 1, got {partitions}"
        )
    if on_error not in ("stop", "skip"):
        raise ValueError(f'replay: on_error must be "stop" or "skip", got "{on_error}"')
    if rejects is not None and on_error != "skip":
        raise ValueError('replay: rejects needs on_error="skip"')
    if time_format not in ("iso", "epoch"):
        raise ValueError(f'replay: time_format must be "iso" or "epoch", got "{time_format}"')
    stage = on_stage or (lambda _name: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now
        stage(name)

    rules_name = os.fspath(rules)
    program = _core.Program.load(rules_name)  # the same RuleError as `nudge replay`
    with open(rules_name, "rb") as f:
        rules_text = f.read()
    spanning = _core._distributed_cross_contact_state(program)
    if spanning:
        raise ValueError(
            "nudge.distributed: "
            + ", ".join(spanning)
            + " assigns owners round robin: its counter runs across contacts in the order one "
            "process meets them, which partitions by contact cannot reproduce; replay these "
            "rules in one process (nudge replay)"
        )
    path = os.fspath(events)
    if path == "-":
        raise ValueError(
            "nudge.distributed: the events must be a file every worker can open (not standard "
            "input)"
        )
    fmt_name, gz = _ranges.format_of(path)
    try:
        open(path, "rb").close()
    except OSError as why:
        e = _core.ReadError(f"{path}: cannot open: {why.strerror}")
        e.file, e.line, e.reason = path, 0, f"cannot open: {why.strerror}"
        raise e from None
    end = None
    if until is not None:
        end = _core._distributed_epoch(until)
    contacts_name = os.fspath(contacts) if contacts is not None else None
    contacts_path = os.path.abspath(contacts_name) if contacts is not None else None
    name = path  # problems name the files as the user gave them; workers open absolute paths
    path = os.path.abspath(path)
    csv = fmt_name == "csv"
    header = _ranges.header_of(path, csv, gz)
    size = os.path.getsize(path)
    skip = on_error == "skip"
    base = {
        "path": path,
        "name": name,
        "rules_text": rules_text,
        "rules_name": rules_name,
        "format": fmt_name,
        "gz": gz,
        "header": header,
        "size": size,
        "until": end,
        "strict": strict,
        "skip": skip,
    }

    part_spec = {
        "rules_text": rules_text,
        "rules_name": rules_name,
        "contacts": contacts_path,
        "contacts_name": contacts_name,
        "partitions": partitions,
        "batch": batch_events,
        "skip": skip,
        "time_format": time_format,
    }
    # Tasks are spread over the workers in turn (range k, partition p: worker k, p modulo their
    # count) rather than left to data locality, which would run short tasks where the first
    # ones ran; any worker may take them when that one is gone.
    workers = sorted(client.scheduler_info()["workers"])

    def near(k: int) -> dict:
        if not workers:
            return {}
        return {"workers": [workers[k % len(workers)]], "allow_other_workers": True}

    # The contacts are read before any event in one process: their first problem comes first.
    contacts_check = (
        client.submit(_ranges.check_contacts, dict(part_spec), pure=False)
        if contacts_path
        else None
    )

    # 1. Line breaks and quotes per range: each range's first line number and quote parity.
    if gz:
        specs = [dict(base, begin=0, end=size, lines=0, parity=0, end_parity=0)]
    else:
        if range_bytes is None:
            threads = max(1, sum(client.nthreads().values()))
            range_bytes = min(DEFAULT_RANGE_BYTES, max(1 << 20, -(-size // (2 * threads))))
        bounds = _ranges.plan_ranges(path, max(1, -(-size // max(1, range_bytes))))
        counts = client.gather(
            [
                client.submit(_ranges.count_range, path, b, e, pure=False, **near(k))
                for k, (b, e) in enumerate(bounds)
            ]
        )
        specs = []
        lines = quotes = 0
        for (b, e), (n, q) in zip(bounds, counts):
            parity = quotes % 2 if csv else 0
            end_parity = (quotes + q) % 2 if csv else 0
            specs.append(
                dict(base, begin=b, end=e, lines=lines, parity=parity, end_parity=end_parity)
            )
            lines += n
            quotes += q
    lap("counted")

    # 2. The identity pass: identify events of every range, joined into merge groups.
    first_pass = client.gather(
        [
            client.submit(_ranges.read_range, s, None, partitions, None, pure=False, **near(k))
            for k, s in enumerate(specs)
        ]
    )
    parent: dict[bytes, bytes] = {}

    def find(x: bytes) -> bytes:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    for r in first_pass:
        for visitor, known in r["identify"]:
            a, b = find(visitor), find(known)
            if a != b:
                # The smaller id becomes the root: a group's canonical id is its smallest.
                if b < a:
                    a, b = b, a
                parent[b] = a
                parent.setdefault(a, a)
    identities = {x.decode(): find(x).decode() for x in parent if find(x) != x}
    # Each range's "not before": the latest time the ranges before it accepted (a line before
    # it is out of order, as the one-process reader finds).
    not_before = []
    latest = None
    for r in first_pass:
        not_before.append(latest)
        if r["last"] is not None:
            latest = r["last"] if latest is None else max(latest, r["last"])
    lap("identified")

    # 3. The shuffle: events cut by partition; problems of every range gathered.
    # A task's result rather than scattered data: a result lost with its worker is recomputed
    # (scattered data would be gone for good), and each worker fetches it once.
    ids_future = (
        client.submit(_ranges.identity_map, identities, pure=False) if identities else None
    )
    shuffled = [
        client.submit(
            _ranges.read_range, s, ids_future or {}, partitions, nb, pure=False, **near(k)
        )
        for k, (s, nb) in enumerate(zip(specs, not_before))
    ]
    metas = client.gather([client.submit(_ranges.meta, f) for f in shuffled])
    if contacts_check is not None:
        contacts_check.result()
    errors = [m["error"] for m in metas if m["error"] is not None]
    if errors:
        # The earliest bad line, as one process stops at it (a whole-file problem first).
        _raise_problem(min(errors, key=lambda p: p[0]))
    first = next((m["first"] for m in metas if m["first"] is not None), None)
    last = max((m["last"] for m in metas if m["last"] is not None), default=None)
    events_read = sum(m["events"] for m in metas)
    blocks = [
        [client.submit(_ranges.block, f, p) for f in shuffled] for p in range(partitions)
    ]
    dask_distributed.wait([b for bs in blocks for b in bs])
    # Let the workers drop the ranges' results (each event is held once, in its block); Dask
    # still recomputes them from their tasks if a block is lost with its worker.
    del shuffled
    lap("shuffled")

    # 4. The partitions' replays, in rounds while the default end extends.
    if end is not None:
        untils = [end]
    elif last is not None:
        untils = [min(last + int(program.longest_delay.total_seconds()), _MAX_INPUT_TIME)]
    else:
        untils = [0]
    part_spec["upsert_at"] = first

    def run(which: list[int]) -> dict[int, dict]:
        futures = {
            p: client.submit(
                _ranges.replay_partition,
                part_spec,
                ids_future or {},
                p,
                list(untils),
                *blocks[p],
                pure=False,
                **near(p),
            )
            for p in which
        }
        return dict(zip(futures, client.gather(list(futures.values()))))

    results = run(list(range(partitions)))
    extensions = 0
    if end is None and last is not None:
        while extensions < max_extensions:
            timers = sum(r["pending"] for r in results.values())
            if timers == 0:
                break
            nxt = min(
                max(r["last_pending"] for r in results.values() if r["pending"] > 0),
                _MAX_INPUT_TIME,
            )
            if nxt <= untils[-1]:
                break
            untils.append(nxt)
            extensions += 1
            # A partition with no timer at all cannot change by going further: keep its result.
            again = [p for p, r in results.items() if r["pending"] > 0 or r["recurring"] > 0]
            results.update(run(again))
    lap("replayed")

    ordered = [results[p] for p in range(partitions)]
    # 5. The k-way merge by (ts, contact): one contact lives in one partition, so equal keys
    # come from one partition, in its (emission) order.
    blocks_out = [r["actions"] for r in ordered]
    action_count = sum(r["action_count"] for r in ordered)
    contact_rejects = ordered[0]["contact_rejects"] if ordered else []
    event_rejects = [p for m in metas for p in m["rejects"]]
    if skip and rejects is not None:
        _write_rejects(rejects, contact_rejects + event_rejects)
    frame = None
    if out is not None and os.fspath(out) != "-":
        target = os.fspath(out)
        part = target + ".part"
        try:
            _core._distributed_merge(blocks_out, part)
            os.replace(part, target)
        except BaseException:
            if os.path.exists(part):
                os.remove(part)
            raise
    elif out is not None:
        import sys

        sys.stdout.buffer.write(_core._distributed_merge(blocks_out, ""))
        sys.stdout.buffer.flush()
    else:
        frame = _frame(_core._distributed_merge(blocks_out, ""), time_format)
    lap("merged")

    stats = _merge_stats([r["stats"] for r in ordered])
    workflow_stats = _merge_stats([r["workflow_stats"] for r in ordered])
    for w in workflow_stats:
        w["steps"] = {st["step"]: st for st in w["steps"]}
    pending = sum(r["pending"] for r in ordered)
    last_pending = max((r["last_pending"] for r in ordered if r["pending"] > 0), default=None)
    return DistributedReplay(
        actions=frame,
        action_count=action_count,
        stats={s["rule"]: _with_datetimes(s) for s in stats},
        workflow_stats={w["workflow"]: _with_datetimes(w) for w in workflow_stats},
        events_read=events_read,
        contacts_read=ordered[0]["contacts_read"] if ordered else 0,
        rejected=len(contact_rejects) + len(event_rejects),
        until=_to_datetime(untils[-1]),
        pending=pending,
        last_pending=_to_datetime(last_pending),
        recurring_pending=sum(r["recurring"] for r in ordered),
        extensions=extensions,
        timings=timings,
        ranges=len(specs),
        shuffle_bytes=sum(r["block_bytes"] for r in ordered),
        partitions=[
            {
                "events": r["events"],
                "shuffle_bytes": r["block_bytes"],
                "actions": r["action_count"],
                "cpu": r["cpu"],
            }
            for r in ordered
        ],
        problems=contact_rejects + event_rejects,
    )


def _write_rejects(path, problems) -> None:
    """As nudge::replay: each refused line as "file:line: reason", a tab, the line."""
    with open(os.fspath(path), "wb") as f:
        for _line, message, _reason, text, _file in problems:
            f.write(message.encode() + b"\t" + text + b"\n")
