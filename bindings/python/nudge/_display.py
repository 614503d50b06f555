"""Statistics and timelines as they come out of nudge, with DataFrames and notebook rendering.

Engine.stats() returns a Stats, Engine.workflow_stats() a WorkflowStats and Engine.explain() a
Timeline: the plain dicts and lists they always were (equal to them, JSON-serialisable), plus
to_frame() for pandas and _repr_html_ for Jupyter. Every cell of the HTML is escaped: contact
ids, keys and texts come from event logs nobody vetted.
"""
from __future__ import annotations

import html

_RULE_COUNTS = ("triggered", "passed", "failed", "suppressed", "emitted")
_WORKFLOW_COUNTS = ("entered", "completed", "exited", "ended", "sent", "opened", "clicked",
                    "active")
_STEP_COUNTS = ("reached", "sent", "opened", "clicked", "waiting", "ended")
_DELIVERY = ("no_consent", "capped", "off_hours", "deferred_cap", "deferred_hours")
_TIMELINE = ("ts", "source", "what", "reason", "until", "text")


def _cell(value):
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _table(headers, rows, caption=None):
    """An HTML table; every header, cell and the caption escaped."""
    out = ['<table class="nudge">']
    if caption is not None:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
               + "</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _frame(records, columns, index, times):
    import pandas as pd

    df = pd.DataFrame.from_records(records, columns=columns)
    for c in times:  # None -> NaT; aware UTC datetimes -> datetime64[ns, UTC]
        df[c] = pd.to_datetime(df[c], utc=True)
    return df.set_index(index)


class Stats(dict):
    """Per-rule statistics {rule_id: {rule, triggered, passed, failed, suppressed, emitted,
    delivery, first, last}}, in program order: a dict, with to_frame() and an HTML rendering."""

    def _records(self):
        for rule, s in self.items():
            d = s["delivery"]
            yield ((rule, *(s[c] for c in _RULE_COUNTS), *(d[c] for c in _DELIVERY), s["first"],
                    s["last"]))

    def to_frame(self):
        """One row per rule (index "rule"): the counts, the delivery policy's counts flattened
        (no_consent, capped, off_hours, deferred_cap, deferred_hours), first and last as
        datetime64[ns, UTC] (NaT for a rule that never fired)."""
        return _frame(list(self._records()),
                      ["rule", *_RULE_COUNTS, *_DELIVERY, "first", "last"], "rule",
                      ("first", "last"))

    def _repr_html_(self):
        return _table(["rule", *_RULE_COUNTS, *_DELIVERY, "first", "last"], self._records(),
                      caption=f"nudge rule statistics ({len(self)} rules)")


class WorkflowStats(dict):
    """Per-workflow statistics {workflow_id: {..., steps: {step_id: {...}}}}, in program order:
    a dict, with to_frame() and an HTML rendering (one row per step)."""

    def _step_records(self):
        for wf, w in self.items():
            for step, s in w["steps"].items():
                d = s["delivery"]
                yield ((wf, step, *(s[c] for c in _STEP_COUNTS), *(d[c] for c in _DELIVERY),
                        s["first"], s["last"]))

    def _workflow_records(self):
        for wf, w in self.items():
            d = w["delivery"]
            yield ((wf, *(w[c] for c in _WORKFLOW_COUNTS), *(d[c] for c in _DELIVERY),
                    w["first"], w["last"]))

    def to_frame(self, steps=True):
        """steps=True: one row per workflow step (index (workflow, step)) with reached, sent,
        opened, clicked, waiting, ended, the delivery counts, first, last. steps=False: one row
        per workflow (index "workflow") with entered, completed, exited, ended, sent, opened,
        clicked, active, the delivery counts, first, last. Times are datetime64[ns, UTC]."""
        if steps:
            return _frame(list(self._step_records()),
                          ["workflow", "step", *_STEP_COUNTS, *_DELIVERY, "first", "last"],
                          ["workflow", "step"], ("first", "last"))
        return _frame(list(self._workflow_records()),
                      ["workflow", *_WORKFLOW_COUNTS, *_DELIVERY, "first", "last"], "workflow",
                      ("first", "last"))

    def _repr_html_(self):
        return _table(["workflow", "step", *_STEP_COUNTS, *_DELIVERY, "first", "last"],
                      self._step_records(),
                      caption=f"nudge workflow statistics ({len(self)} workflows)")


class Timeline(list):
    """A contact's explained timeline, oldest first: a list of dicts {ts, source, what, reason,
    until, text}, with the contact's id, to_frame() and an HTML rendering."""

    def __init__(self, entries=(), contact=""):
        super().__init__(entries)
        self.contact = contact

    def to_frame(self):
        """One row per entry: ts and until as datetime64[ns, UTC] (until NaT when the entry
        holds no later instant), source, what, reason, text."""
        import pandas as pd

        df = pd.DataFrame.from_records([tuple(e[c] for c in _TIMELINE) for e in self],
                                       columns=list(_TIMELINE))
        for c in ("ts", "until"):
            df[c] = pd.to_datetime(df[c], utc=True)
        return df

    def _repr_html_(self):
        return _table(list(_TIMELINE), ([e[c] for c in _TIMELINE] for e in self),
                      caption=f"timeline of contact {self.contact} ({len(self)} entries)")

    def __reduce__(self):
        return (Timeline, (list(self), self.contact))


def program_html(program):
    """Program._repr_html_: one row per rule, workflow and segment."""
    rows = program._outline()
    counts = {}
    for kind, *_ in rows:
        counts[kind] = counts.get(kind, 0) + 1
    summary = ", ".join(f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in counts.items())
    return _table(["kind", "id", "on", "delay", "does"], rows,
                  caption=f"nudge program ({summary or 'empty'})")
