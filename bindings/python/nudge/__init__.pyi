"""Type stubs for nudge: an embeddable marketing-automation rules engine."""
from __future__ import annotations

import datetime
import os
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterable,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Union,
    overload,
)

#: The library's version, "MAJOR.MINOR.PATCH" (nudge/version.hpp, CMake's project version).
__version__: str

if TYPE_CHECKING:
    import pandas

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

#: An instant: a timezone-aware datetime, epoch seconds (int, or float floored to the second),
#: or an ISO-8601 string with an offset. A naive datetime raises ValueError.
Time = Union[datetime.datetime, int, float, str]
#: A detail or event property value.
Value = Union[str, int, float, bool, datetime.datetime]
#: {"contact": str, "type": str, "ts": Time, "key": str (optional), "props": dict (optional)};
#: the time is "ts", as in event files ("at" is refused). contact and key may be ints (their
#: decimal text, as a CSV cell). Any other field is a prop, as another column of an event file
#: ("value", "lat", "lon" as floats); None, NaN, NaT or "" is no prop, as an empty cell. So a
#: row of DataFrame.to_dict("records") is an event.
EventDict = Mapping[str, Any]
#: (contact, type, ts[, key[, props]])
EventTuple = Union[
    Tuple[str, str, Time],
    Tuple[str, str, Time, Optional[str]],
    Tuple[str, str, Time, Optional[str], Optional[Mapping[str, Value]]],
]
Event = Union[EventDict, EventTuple]
#: A batch of events: an iterable of Event, or a pandas DataFrame with the columns of an event
#: file: ts (datetime64, aware or naive = UTC; epoch seconds int or float; aware datetime
#: objects or ISO-8601 strings), contact and type (str, or int ids as pd.read_csv makes them),
#: key (optional), props (optional, dicts) and any other column a prop ("value", "lat", "lon"
#: floats; NaN / None / NaT / pd.NA / "" cells no prop). Rows are read in position order (the
#: index is ignored); errors name the row position and the column.
Events = Union[Iterable[Event], "pandas.DataFrame"]
PathLike = Union[str, "os.PathLike[str]"]

class RuleError(ValueError):
    """A rule file or rule set that cannot be compiled.

    str(e) lists every problem, one per line ("file:line:column: /json/pointer: message").
    """

    diagnostics: list[Diagnostic]
    """Every problem found, in document order."""
    file: str
    """The first problem's file name (the file_name given, or '')."""
    line: int
    """The first problem's 1-based line; 0 when unknown."""
    column: int
    """The first problem's 1-based column; 0 when unknown."""
    json_pointer: str
    """The first problem's JSON pointer, e.g. '/rules/3/then/0/do'."""
    code: str
    """The first problem's machine-readable code, e.g. 'unknown_field'."""

class InputError(ValueError):
    """An event the engine refuses; the batch changed nothing."""

    contact: str
    """The contact whose event was refused."""
    event_index: int
    """The refused event's position in the batch."""
    reason: str
    """Why, in words."""

class RuleCycleError(RuntimeError):
    """Internal actions kept triggering rules past the depth limit; the batch changed nothing."""

    contact: str
    """The contact being evaluated."""
    chain: list[str]
    """The rule ids of the cycle, in order."""

class CallbackError(RuntimeError):
    """A store or sink failed with an error that is not a Python exception.

    A Python exception raised in a callback propagates as itself, not as CallbackError.
    """

    callback: str
    """'store.load', 'store.save', 'store.due' or 'sink.deliver'."""
    contact: str
    """The contact being handled, or '' for a call covering the whole batch."""

class ReadError(ValueError):
    """An event or contact file that cannot be read, or a bad line with on_error='stop'."""

    file: str
    """The file's name as given."""
    line: int
    """1-based line; 0 for a problem with the whole file."""
    reason: str
    """Why, in words."""

class Diagnostic:
    """One problem in a rule file: where it is and what is wrong."""

    @property
    def file(self) -> str:
        """The file name given, or ''."""
    @property
    def line(self) -> int:
        """1-based line; 0 when unknown."""
    @property
    def column(self) -> int:
        """1-based column; 0 when unknown."""
    @property
    def json_pointer(self) -> str:
        """RFC 6901 path to the offending value, e.g. '/rules/2/delay'."""
    @property
    def code(self) -> str:
        """Stable machine-readable code, e.g. 'unknown_field'."""
    @property
    def message(self) -> str:
        """What is wrong, in words."""
    def to_dict(self) -> dict[str, Any]:
        """The diagnostic as a plain dict (file, line, column, json_pointer, code, message)."""

class Program:
    """A compiled, validated, immutable rule program; share it between engines."""

    @staticmethod
    def from_json(source: Union[str, bytes, Mapping[str, Any]], file_name: str = "") -> Program:
        """Compiles a rule file given as JSON text or as a dict (see docs/rules.md).

        Raises RuleError listing every problem; `file_name` appears in its messages. For a
        dict, line:column refer to its json.dumps text: rely on json_pointer instead.
        """
    @staticmethod
    def load(path: PathLike) -> Program:
        """Reads and compiles the rule file at `path`. Raises RuleError (also when unreadable)."""
    @property
    def rule_ids(self) -> list[str]:
        """The rules' ids, in program order."""
    @property
    def longest_delay(self) -> datetime.timedelta:
        """The longest a rule keeps a timer pending (delay plus longest action delay)."""
    def knows_event_type(self, type: str) -> bool:
        """True for built-in types, declared types and types any rule mentions."""
    @property
    def segments(self) -> list[str]:
        """The segment names, in evaluation order."""
    def __len__(self) -> int:
        """The number of rules (counts has the workflows, segments and score rules too)."""
    @property
    def counts(self) -> dict[str, int]:
        """What the program holds, as `nudge check` prints it: {"rules", "workflows",
        "segments", "scoring" (score rules)} to counts."""
    def _repr_html_(self) -> str:
        """An HTML table (cells escaped) with one row per rule, workflow and segment: kind, id,
        on (trigger), delay, does (the actions; a workflow's step count)."""

class DueAction:
    """An action that has come due for a contact.

    Deliver it if external (send_email, ...); internal actions appear only when the rule asked
    to notify the host. Equal when contact, ts, rule, action, arg and key are equal.
    """

    @property
    def contact(self) -> str:
        """The contact's id."""
    @property
    def rule(self) -> str:
        """Id of the rule that produced it (of the workflow, for a workflow step's action)."""
    @property
    def step(self) -> Optional[str]:
        """Id of the workflow step that produced it, or None for a rule's action."""
    @property
    def action(self) -> str:
        """What it does (CSV column action): 'send_email', 'generate_coupon', 'assign_owner', ..."""
    @property
    def arg(self) -> str:
        """The main parameter as delivered: template, tag, ..., or the owner picked."""
    @property
    def params(self) -> dict[str, str]:
        """Further parameters from the rule (a new dict each time)."""
    @property
    def ts(self) -> datetime.datetime:
        """When it is due (CSV column ts): an aware UTC datetime."""
    @property
    def ts_epoch(self) -> int:
        """When it is due, in epoch seconds."""
    @property
    def idempotency_key(self) -> int:
        """Same for the same input replayed, different for every action."""
    @property
    def is_external(self) -> bool:
        """True for actions the host delivers."""
    def to_dict(self) -> dict[str, Any]:
        """contact, rule, action, arg, params, ts, idempotency_key as a plain dict."""
    def __hash__(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...

class Contact:
    """A read-only snapshot of a contact's profile."""

    @property
    def id(self) -> str:
        """The host's key."""
    @property
    def details(self) -> dict[str, Value]:
        """Typed details (a new dict)."""
    @property
    def tags(self) -> dict[str, datetime.datetime]:
        """Tag -> when it was added (a new dict)."""
    @property
    def score(self) -> float:
        """The lead score."""
    @property
    def owner(self) -> str:
        """The owning sales rep, or ''."""
    @property
    def status(self) -> str:
        """'lead', 'customer' or a custom status."""
    @property
    def stage(self) -> str:
        """Lifecycle or campaign stage, or ''."""
    @property
    def groups(self) -> frozenset[str]:
        """Group memberships."""
    @property
    def consent(self) -> dict[str, bool]:
        """Consent per channel."""
    @property
    def time_zone(self) -> str:
        """IANA zone name, or ''."""
    @property
    def location(self) -> Optional[tuple[float, float]]:
        """(lat, lon) in WGS84 degrees, or None when unknown (docs/rules.md, "Location")."""
    def to_dict(self) -> dict[str, Any]:
        """The profile as a plain dict."""
    def __eq__(self, other: object) -> bool: ...

class ContactState:
    """Everything the engine keeps for one contact, opaque to Python.

    A store keeps these objects and hands them back from load(); copy.copy/copy.deepcopy give
    independent copies; they cannot be pickled. A state belongs to the program that made it.
    """

    @property
    def id(self) -> str:
        """The contact's id."""
    @property
    def contact(self) -> Contact:
        """The contact's profile."""
    @property
    def next_due(self) -> Optional[datetime.datetime]:
        """When the earliest pending timer is due, or None: due(now) lists ids with next_due <= now."""
    @property
    def pending_timers(self) -> int:
        """Pending delayed checks and delayed actions."""
    @property
    def segments(self) -> dict[str, datetime.datetime]:
        """Segments the contact is in: a new dict name -> when it entered (aware UTC)."""
    @property
    def merged_into(self) -> Optional[str]:
        """The contact this id was identified as and merged into (the state is then only an
        alias record), or None."""
    def copy(self) -> ContactState:
        """An independent copy."""
    def __copy__(self) -> ContactState: ...
    def __deepcopy__(self, memo: Any) -> ContactState: ...
    def __eq__(self, other: object) -> bool: ...

class Store(Protocol):
    """What Engine expects of a Python store."""

    def load(self, contact_id: str) -> Optional[ContactState]:
        """The state saved for the contact, or None."""
    def save(self, states: list[ContactState]) -> None:
        """Saves one batch's states, all or none."""
    def due(self, now: datetime.datetime) -> Iterable[str]:
        """Ids of contacts whose next_due <= now."""
    # Optional: segment_members(self, name: str) -> Iterable[str], ids of the contacts whose
    # state's segments contain `name`; Engine.segment_members / segment_size call it.

#: Any callable taking each batch's list of due actions.
Sink = Callable[[list[DueAction]], Any]

class Stats(dict[str, dict[str, Any]]):
    """Per-rule statistics {rule_id: {rule, triggered, passed, failed, suppressed, emitted,
    delivery, first, last}} in program order: a dict, plus to_frame() and _repr_html_."""

    def to_frame(self) -> "pandas.DataFrame":
        """One row per rule (index "rule"): triggered, passed, failed, suppressed, emitted, the
        delivery counts flattened (no_consent, capped, off_hours, deferred_cap,
        deferred_hours), first and last as datetime64[ns, UTC] (NaT: never)."""
    def _repr_html_(self) -> str: ...

class WorkflowStats(dict[str, dict[str, Any]]):
    """Per-workflow statistics (Engine.workflow_stats()): a dict, plus to_frame() and
    _repr_html_ (one row per step)."""

    def to_frame(self, steps: bool = True) -> "pandas.DataFrame":
        """steps=True: one row per step, index (workflow, step): reached, sent, opened, clicked,
        waiting, ended, the delivery counts, first, last. steps=False: one row per workflow,
        index "workflow": entered, completed, exited, ended, sent, opened, clicked, active, the
        delivery counts, first, last. Times are datetime64[ns, UTC]."""
    def _repr_html_(self) -> str: ...

class Timeline(list[dict[str, Any]]):
    """A contact's explained timeline (Engine.explain), oldest first: a list of dicts {ts,
    source, what, reason, until, text}, plus the contact's id, to_frame() and _repr_html_ (an
    HTML table, every cell escaped)."""

    contact: str
    def to_frame(self) -> "pandas.DataFrame":
        """One row per entry: ts and until as datetime64[ns, UTC] (until NaT when the entry
        holds no later instant), source, what, reason, text."""
    def _repr_html_(self) -> str: ...

class ReplayResult:
    """What Engine.replay returns; the actions stay in C++ until read."""

    @property
    def actions(self) -> list[DueAction]:
        """The due actions, sorted by (ts, contact) (a new list each time)."""
    def to_frame(self) -> "pandas.DataFrame":
        """The actions as a pandas DataFrame, built in C++ column by column (no DueAction or
        dict per row), sorted by (ts, contact). Columns: ts (datetime64[ns, UTC]), contact,
        rule (categorical: every rule and workflow step of the program in program order; a
        step's action says "workflow/step", as the CSV), action (categorical: the kinds that
        occur), arg — equal to the CSV of write_csv / `nudge replay` — then step (the step's
        id, None for a rule's action), params (a dict, one object shared by the rows of one
        action definition: copy before changing it) and idempotency_key (uint64). Raises
        ValueError for an action due outside pandas' datetime64[ns] range (1677-2262)."""
    @property
    def stats(self) -> Stats:
        """The engine's per-rule statistics after the replay (as Engine.stats())."""
    @property
    def workflow_stats(self) -> WorkflowStats:
        """The engine's per-workflow statistics after the replay (as Engine.workflow_stats())."""
    @property
    def contacts_read(self) -> int:
        """Contacts read from the contacts file."""
    @property
    def events_read(self) -> int:
        """Events accepted."""
    @property
    def rejected(self) -> int:
        """Lines refused with on_error='skip'."""
    @property
    def until(self) -> datetime.datetime:
        """The instant timers ran to."""
    @property
    def pending(self) -> int:
        """Timers still pending after `until` that run out by themselves (0 after the default
        end unless its 1000 extensions ran out)."""
    @property
    def last_pending(self) -> Optional[datetime.datetime]:
        """When the latest pending timer is due, or None."""
    @property
    def recurring_pending(self) -> int:
        """Recurring timers left (yearly dates, score decay), not counted in `pending`."""
    def write_csv(self, path: PathLike, time_format: str = "iso") -> None:
        """Writes ts,contact,rule,action,arg as `nudge replay` does; time_format 'iso' or 'epoch'."""
    def __len__(self) -> int:
        """The number of actions."""

class Engine:
    """Runs a program over batches of events with your clock, store and sink.

    Every batch is atomic: if an event is refused or a callback raises, nothing is stored,
    delivered or counted (except when store.save raises after the sink accepted the actions).
    One batch at a time per engine; the GIL is released while C++ evaluates.
    """

    def __init__(
        self,
        program: Program,
        store: Optional[Store] = None,
        sink: Optional[Sink] = None,
        *,
        create_unknown_contacts: bool = True,
        max_events_per_contact: int = 100_000,
    ) -> None:
        """`store` defaults to an in-memory store; without a sink actions are only returned.
        A batch with more than `max_events_per_contact` events for one contact (0: no limit)
        raises InputError and changes nothing (docs/limits.md)."""
    def process(self, events: Events, now: Time) -> list[DueAction]:
        """Applies `events` (each contact's in time order; dicts, tuples or a pandas DataFrame,
        see Events), then fires timers due at or before
        `now`; returns the batch's actions sorted by (ts, contact). An `identify` event for a
        visitor id whose key is a known contact's id, e.g. ("v1", "identify", t, "c42"), merges
        the visitor into that contact; later events for "v1" reach "c42" (docs/rules.md,
        "Identity")."""
    def advance(self, now: Time) -> list[DueAction]:
        """Fires every timer due at or before `now`; returns the actions."""
    def change_program(self, program: Program, at: Time) -> None:
        """Takes a changed rule program at instant `at` (docs/rules.md, "Lifecycle and
        versions"): archived workflows end their runs, paused ones hold them, reactivated ones
        resume held waits at `at`, new versions move runs by step id. Raises RuleError if the
        change is refused; nothing changes then. A Python store needs a contacts() method."""
    def replay(
        self,
        events: PathLike,
        contacts: Optional[PathLike] = None,
        until: Optional[Time] = None,
        *,
        on_error: str = "stop",
        rejects: Optional[PathLike] = None,
        batch_events: int = 16384,
    ) -> ReplayResult:
        """Replays an event file (CSV or JSON Lines) through this engine entirely in C++; the
        contacts file is upserted at the first event's time (an InputError if that is before a
        contact's clock), so birthdays of contacts without events are scheduled."""
    def contact(self, id: str) -> Optional[Contact]:
        """The contact's profile, or None."""
    @overload
    def upsert_contact(
        self, id: str, fields: Optional[Mapping[str, Any]] = None, *, at: None = None,
        **kwargs: Any
    ) -> None: ...
    @overload
    def upsert_contact(
        self, id: str, fields: Optional[Mapping[str, Any]] = None, *, at: Time, **kwargs: Any
    ) -> list[DueAction]: ...
    def upsert_contact(
        self, id: str, fields: Optional[Mapping[str, Any]] = None, *, at: Optional[Time] = None,
        **kwargs: Any
    ) -> Optional[list[DueAction]]:
        """Creates the contact or updates the given fields (details, tags, score, owner, status,
        stage, groups, consent, time_zone, location: (lat, lon) or None); others keep their
        values. Without `at` the profile
        is only stored (evaluated at the contact's next event; returns None). With `at` the
        contact is evaluated at that instant as one atomic batch: timers due before it fire,
        then segments, score thresholds and yearly entries (birthdays) follow the new profile,
        then timers due at it; returns the DueActions. `at` before the contact's clock raises
        InputError and changes nothing."""
    @overload
    def upsert_contacts(self, contacts: Iterable[Mapping[str, Any]], at: None = None) -> None: ...
    @overload
    def upsert_contacts(
        self, contacts: Iterable[Mapping[str, Any]], at: Time
    ) -> list[DueAction]: ...
    def upsert_contacts(
        self, contacts: Iterable[Mapping[str, Any]], at: Optional[Time] = None
    ) -> Optional[list[DueAction]]:
        """Creates or updates many contacts in one store call (all or none): dicts with "id"
        and the fields to set, as in upsert_contact. With `at`, evaluates them there in one
        atomic batch (as upsert_contact(..., at=...)) and returns the DueActions."""
    def segment_members(self, name: str) -> list[str]:
        """Ids of the contacts in segment `name`, sorted, as of each contact's last evaluation.
        Asks the store: the in-memory one keeps an index; a Python store answers with its own
        segment_members(name) method (without one this raises CallbackError). Raises
        ValueError for a name the program does not define."""
    def segment_size(self, name: str) -> int:
        """Number of contacts in segment `name`; raises as segment_members."""
    def stats(self) -> Stats:
        """{rule_id: {rule, triggered, passed, failed, suppressed, emitted, delivery, first,
        last}}; delivery is the delivery policy's {no_consent, capped, off_hours, deferred_cap,
        deferred_hours} (C++ rule_stats::delivery)."""
    def explain(self, id: str, *, json: bool = False) -> Timeline | str | None:
        """The contact's timeline, oldest first: [{ts, source, what, reason, until, text}], or
        the JSON text of `nudge explain --json` with json=True; None for an unknown contact.
        Empty unless the rule file keeps timelines ("timeline": {"size": N})."""
    def workflow_stats(self) -> WorkflowStats:
        """{workflow_id: {workflow, entered, completed, exited, ended, sent, opened, clicked,
        active, first, last, delivery, steps: {step_id: {step, reached, sent, opened, clicked,
        waiting, ended, first, last, delivery}}}}, delivery being the delivery policy's
        {no_consent, capped, off_hours, deferred_cap, deferred_hours} as in stats(); active and waiting count the
        runs inside now (waiting includes runs held at a send step while its message is
        deferred); ended counts runs a program change ended (workflow archived, or the run's step
        gone from a new version)."""
    @property
    def program(self) -> Program:
        """The engine's program."""
    @property
    def store(self) -> Optional[Store]:
        """The Python store, or None for the in-memory one."""
    @property
    def sink(self) -> Optional[Sink]:
        """The sink, or None."""

def replay(
    rules: Union[Program, Mapping[str, Any], PathLike],
    events: PathLike,
    contacts: Optional[PathLike] = None,
    until: Optional[Time] = None,
    *,
    on_error: str = "stop",
    rejects: Optional[PathLike] = None,
    batch_events: int = 16384,
) -> ReplayResult:
    """Replays an event file through a fresh Engine of `rules` (a Program, a rule dict or a rule
    file's path), as `nudge replay` does. nudge.replay(rules, events).to_frame() is the actions
    as a DataFrame; .stats.to_frame() the per-rule statistics."""

class Diff:
    """What changes when old rules become new ones over the same history (nudge.diff).

    An action is its whole output row (ts, contact, rule, action, arg, as `nudge replay` writes
    them; rule "workflow/step" for a step's action); the two replays' actions are compared as
    multisets: a row in new not in old is added, in old not in new removed; a contact with any
    added or removed action is affected."""

    added: "pandas.DataFrame"
    """The actions only new has (the columns of ReplayResult.to_frame(), rule and action str)."""
    removed: "pandas.DataFrame"
    """The actions only old has."""
    summary: "pandas.DataFrame"
    """Per rule (and workflow step) with a change, in program order: rule, added, removed,
    contacts (affected contacts)."""
    per_day: "pandas.DataFrame"
    """Per UTC day with a change: day (midnight UTC, datetime64[ns, UTC]), added, removed."""
    contacts: "pandas.DataFrame"
    """Per affected contact: contact, added, removed."""
    @property
    def empty(self) -> bool:
        """True when both rule files produce the same actions."""
    def _repr_html_(self) -> str: ...

def diff(
    old_rules: Union[Program, Mapping[str, Any], PathLike],
    new_rules: Union[Program, Mapping[str, Any], PathLike],
    events: PathLike,
    contacts: Optional[PathLike] = None,
    until: Optional[Time] = None,
    *,
    on_error: str = "stop",
) -> Diff:
    """Replays the same events (and contacts) through both rule sets and compares their
    actions ("if the reminder waits 2 days instead of 1, what changes?"). Both replays run to
    `until`, by default to the later of their two default ends."""
