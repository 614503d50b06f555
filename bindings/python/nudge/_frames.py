"""nudge.replay: a rule file over an event file in one call (ReplayResult.to_frame() gives the
actions as a pandas DataFrame)."""
from __future__ import annotations

import os
from collections.abc import Mapping

from ._core import Engine, Program


def _program(rules):
    if isinstance(rules, Program):
        return rules
    if isinstance(rules, Mapping):
        return Program.from_json(dict(rules))
    if isinstance(rules, (str, bytes, os.PathLike)):
        return Program.load(rules)
    raise TypeError(f"rules: expected a Program, a rule dict or a path, got "
                    f"{type(rules).__name__}")


def replay(rules, events, contacts=None, until=None, *, on_error="stop", rejects=None,
           batch_events=16384):
    """Replays an event file through a fresh engine of `rules` (a Program, a rule dict or the
    path of a rule file), as `nudge replay` does; returns the ReplayResult (to_frame() for the
    actions as a DataFrame, .stats and .workflow_stats for the statistics)."""
    engine = Engine(_program(rules))
    return engine.replay(events, contacts, until, on_error=on_error, rejects=rejects,
                         batch_events=batch_events)
