"""nudge.diff: "if I change this rule, which actions change?" Two replays of the same history,
compared as multisets of output rows, answered in pandas DataFrames."""
from __future__ import annotations

from ._frames import _program, replay

#: The columns that make an action in a diff: its whole row of `nudge replay`'s CSV.
ACTION_COLUMNS = ["ts", "contact", "rule", "action", "arg"]


def _only_in(a, b):
    """The rows of `a` that `b` lacks, as multisets of ACTION_COLUMNS rows: an action that
    happens twice in `a` and once in `b` leaves one. Keeps a's order and all its columns."""
    def keyed(df):
        k = df[ACTION_COLUMNS].copy()
        for c in ("rule", "action"):  # categories differ between programs: compare the text
            k[c] = k[c].astype(object)
        k["_n"] = k.groupby(ACTION_COLUMNS, sort=False).cumcount()
        return k

    ka, kb = keyed(a), keyed(b)
    kb["_in_b"] = True
    m = ka.merge(kb, on=ACTION_COLUMNS + ["_n"], how="left")
    keep = m["_in_b"].isna().to_numpy()
    out = a[keep].reset_index(drop=True)
    out["rule"] = out["rule"].astype(object)
    out["action"] = out["action"].astype(object)
    return out


class Diff:
    """What changes when `old` rules become `new` ones over the same history (nudge.diff).

    An action is its whole output row (ts, contact, rule, action, arg, as `nudge replay` writes
    them; rule is "workflow/step" for a workflow step's action); the two replays' actions are
    compared as multisets. Attributes (pandas DataFrames):

    - added: the actions of `new` that `old` lacks (columns of ReplayResult.to_frame(), rule and
      action as str), in time order;
    - removed: the actions of `old` that `new` lacks;
    - summary: per rule with a change: rule, added, removed, contacts (how many contacts it
      changes);
    - per_day: per UTC day (ts at midnight UTC) with a change: day, added, removed;
    - contacts: per affected contact (one with any added or removed action): contact, added,
      removed.
    """

    def __init__(self, old_frame, new_frame):
        import pandas as pd

        self.added = _only_in(new_frame, old_frame)
        self.removed = _only_in(old_frame, new_frame)
        both = pd.concat([self.added.assign(added=1, removed=0),
                          self.removed.assign(added=0, removed=1)], ignore_index=True)
        # Rules in program order (new, then old's rules that new lacks).
        order = list(dict.fromkeys([*new_frame["rule"].cat.categories,
                                    *old_frame["rule"].cat.categories]))
        rank = {r: i for i, r in enumerate(order)}
        summary = (both.groupby("rule", sort=False)
                   .agg(added=("added", "sum"), removed=("removed", "sum"),
                        contacts=("contact", "nunique"))
                   .reset_index())
        summary["_rank"] = summary["rule"].map(rank)
        self.summary = (summary.sort_values("_rank", kind="stable").drop(columns="_rank")
                        .reset_index(drop=True).astype({"added": "int64", "removed": "int64",
                                                        "contacts": "int64"}))
        per_day = both.assign(day=both["ts"].dt.floor("D"))
        self.per_day = (per_day.groupby("day", sort=True)
                        .agg(added=("added", "sum"), removed=("removed", "sum"))
                        .reset_index().astype({"added": "int64", "removed": "int64"}))
        self.contacts = (both.groupby("contact", sort=True)
                         .agg(added=("added", "sum"), removed=("removed", "sum"))
                         .reset_index().astype({"added": "int64", "removed": "int64"}))

    @property
    def empty(self):
        """True when both rule files produce the same actions."""
        return self.added.empty and self.removed.empty

    def __repr__(self):
        return (f"Diff(added={len(self.added)}, removed={len(self.removed)}, "
                f"contacts={len(self.contacts)}, rules={len(self.summary)})")

    def _repr_html_(self):
        from ._display import _table

        return _table(["rule", "added", "removed", "contacts"],
                      self.summary.itertuples(index=False, name=None),
                      caption=f"nudge diff: {len(self.added)} actions added, "
                              f"{len(self.removed)} removed, {len(self.contacts)} contacts")


def diff(old_rules, new_rules, events, contacts=None, until=None, *, on_error="stop"):
    """Replays the same events (and contacts) through `old_rules` and `new_rules` (each a
    Program, a rule dict or a rule file's path) and returns a Diff of their actions.

    Both replays run to the same end: `until`, or by default the later of the two default ends
    (so a longer delay in `new` is not cut short, and nothing in `old` is)."""
    old_p, new_p = _program(old_rules), _program(new_rules)
    old = replay(old_p, events, contacts, until, on_error=on_error)
    new = replay(new_p, events, contacts, until, on_error=on_error)
    if until is None and old.until != new.until:
        end = max(old.until, new.until)
        if old.until < end:
            old = replay(old_p, events, contacts, end, on_error=on_error)
        else:
            new = replay(new_p, events, contacts, end, on_error=on_error)
    return Diff(old.to_frame(), new.to_frame())
