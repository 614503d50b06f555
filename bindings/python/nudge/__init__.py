"""nudge: an embeddable marketing-automation rules engine.

Compile rules once, then feed events and the clock; get back the actions that are due.

    import nudge
    program = nudge.Program.from_json({"rules": [...]})
    engine = nudge.Engine(program)
    due = engine.process([("c1", "page_view", 1704103200, "/pricing")], now=1704103200)
"""
from ._core import (
    CallbackError,
    Contact,
    ContactState,
    Diagnostic,
    DueAction,
    Engine,
    InputError,
    Program,
    ReadError,
    ReplayResult,
    RuleCycleError,
    RuleError,
    __version__,
)
from ._display import Stats, Timeline, WorkflowStats
from ._frames import replay
from ._diff import Diff, diff

__all__ = [
    "CallbackError",
    "Contact",
    "ContactState",
    "Diagnostic",
    "Diff",
    "DueAction",
    "Engine",
    "InputError",
    "Program",
    "ReadError",
    "ReplayResult",
    "RuleCycleError",
    "RuleError",
    "Stats",
    "Timeline",
    "WorkflowStats",
    "diff",
    "replay",
]
__all__ = [name for name in __all__ if name in globals()]
