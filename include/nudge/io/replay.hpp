// nudge/io/replay.hpp: backtesting — replay an event log through a program and collect what it
// would have done.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nudge/due_action.hpp>
#include <nudge/event.hpp>
#include <nudge/fwd.hpp>
#include <nudge/io/read_events.hpp>
#include <nudge/program.hpp>
#include <nudge/stats.hpp>
#include <nudge/time.hpp>

namespace nudge {

/// What to do with a malformed or out-of-order input line.
enum class error_policy : std::uint8_t {
  stop,  ///< throw read_error naming file:line and the reason; nothing is returned
  skip,  ///< refuse the line, report it (rejects file, on_reject) and count it
};

/// How write_actions_csv prints times.
enum class time_format : std::uint8_t {
  iso,    ///< "2024-01-01T10:00:00Z"
  epoch,  ///< "1704103200"
};

/// How far a replay has got; handed to replay_options::on_progress.
struct replay_progress {
  std::size_t bytes_done = 0;  ///< of the events file
  std::size_t bytes_total = 0;
  std::size_t events_read = 0;  ///< accepted so far
  bool evaluating = false;      ///< true once all events are read and the engine runs
};

/// Timers still pending in a store, as a replay reports them at its end.
struct pending_work {
  /// Timers that run out by themselves: a rule's delayed check or action, a message the
  /// delivery policy deferred (quiet hours, send windows, caps), a workflow wait, a segment's
  /// window edge.
  std::size_t timers = 0;
  time_point last{};  ///< when the latest of them is due (valid when timers > 0)
  /// Timers that recur for ever and so never run out: yearly date entries and score decay.
  std::size_t recurring = 0;
};

/// The pending timers of every contact in `s` (store::due, then store::load of each).
/// @throws whatever the store throws.
pending_work find_pending_work(store& s);

struct replay_options {
  /// The contacts file (CSV or JSON Lines, by extension; `--contacts` of `nudge replay`,
  /// `contacts=` in Python); empty: none.
  std::string contacts_path;
  /// Fire timers up to this instant; events after it are refused. Default: the last event's
  /// time plus the program's longest delay (program::longest_delay), then, while timers that
  /// run out by themselves (pending_work::timers: delayed checks and actions, deferred messages,
  /// workflow waits, segment window edges) are still pending, on to the latest of them, again,
  /// at most max_extensions times. Recurring timers (yearly dates, score decay) do not extend
  /// it. A log without events runs to the Unix epoch (nothing is pending).
  std::optional<time_point> until;
  /// Bound on the default end's extensions (a rule chain that keeps rescheduling itself would
  /// otherwise never end); replay_result::pending says what is left.
  std::size_t max_extensions = 1000;
  error_policy on_error = error_policy::stop;
  /// With skip: write each refused line here as "file:line: reason" followed by a tab and the
  /// line itself. Empty: no file (on_reject still hears of every line).
  std::string rejects_path;
  /// With skip: called for every refused line (contacts and events).
  reject_handler on_reject;
  /// Events handed to the engine per process call; 0: all of them in one call (memory then
  /// grows with the log). Batches are cut between distinct timestamps and each is processed up
  /// to just before the next batch's first event, so any batch size gives the same actions,
  /// unless a rule assigns owners round robin (its counter follows the order in which contacts
  /// are processed). The default keeps a replay's memory bounded by its contacts rather than by
  /// the length of the log, at a cost below measurement noise (bench/README.md).
  std::size_t batch_events = default_batch_events;
  /// batch_events' default: 2^14 events (about 2 MB of them in memory at once). On W1 medium
  /// smaller batches cost no more CPU down to 4,096 and 2^18 held 55 MB more (bench/README.md).
  static constexpr std::size_t default_batch_events = std::size_t{1} << 14;
  /// When set, the due actions are handed here batch by batch as they come, in the order of
  /// replay_result::actions (each call's actions are due at or after the previous call's), and
  /// replay_result::actions stays empty: a replay writing a file (`nudge replay --out`) then
  /// holds one batch of actions at a time, not all of them. The views in the actions are valid
  /// during the call (their rule and template views as long as the program lives).
  std::function<void(std::span<const due_action>)> on_actions;
  /// CSV events: refuse columns other than ts, contact, type, key, value instead of reading them
  /// as props (event_read_options::strict_columns).
  bool strict_columns = false;
  /// Called after each chunk of events read or processed.
  std::function<void(const replay_progress&)> on_progress;
  /// Called once with the engine after the last batch (e.g. to read a contact's state and
  /// timeline from its store, as `nudge explain` does).
  std::function<void(engine&)> on_finished;
};

/// The outcome of a replay.
struct replay_result {
  /// The program the actions point into (their rule and arg views); kept alive here.
  std::shared_ptr<const nudge::program> program;
  /// Due actions sorted by (ts, contact), each contact's in emission order; empty when
  /// replay_options::on_actions took them.
  std::vector<due_action> actions;
  std::size_t action_count = 0;   ///< due actions produced (also those on_actions took)
  std::vector<rule_stats> stats;  ///< per rule, in program order
  std::vector<nudge::workflow_stats> workflow_stats;  ///< per workflow (and step), in program order
  std::size_t contacts_read = 0;
  std::size_t events_read = 0;  ///< accepted events
  std::size_t rejected = 0;     ///< refused lines (contacts and events), with skip
  time_point until{};           ///< the end the timers ran to
  /// Timers still pending after `until` (with the default end: 0 unless max_extensions ran
  /// out).
  pending_work pending;
};

/// Replays `events_path` (CSV or JSON Lines) through `program`, with the contacts of
/// `options.contacts_path` (empty: none), on a fresh engine with its in-memory store. An event for
/// a contact that is not in the contacts file (an anonymous visitor, identified later or not)
/// creates that contact, as in live use.
///
/// The contacts are upserted at the log's first accepted event's time
/// (engine::upsert_contacts with that instant), before any event: segments over their profiles
/// are entered there and yearly date entries (a birthday workflow) are scheduled from there, so
/// a contact without events still gets its birthday message. A log without events evaluates
/// nothing (the profiles are only stored).
///
/// Example:
///
///     auto program = nudge::load_rules_file("rules.json");
///     auto result = nudge::replay(program, "events.csv", {.contacts_path = "contacts.csv"});
///     nudge::write_actions_csv(std::cout, result.actions, nudge::time_format::epoch);
///
/// @throws read_error (a file cannot be read, a bad header, or with stop a bad line: file:line
///   and the reason); rule_cycle_error; std::ios_base::failure if the rejects file cannot be
///   written.
replay_result replay(std::shared_ptr<const program> program, const std::string& events_path,
                     const replay_options& options = {});

/// The same on the host's engine (its store, sink and statistics) instead of a fresh one, e.g.
/// one a snapshot was loaded into. Contacts of `options.contacts_path` are upserted at the first
/// event's time (an input_error if that is before a stored contact's clock); events for
/// contacts neither stored nor in the file create them (engine_options::
/// create_unknown_contacts), as anonymous visitors. `stats` and `workflow_stats` are the
/// engine's totals.
replay_result replay(engine& eng, const std::string& events_path,
                     const replay_options& options = {});

/// How many leading events of `events` (in time order) lie before its last instant. An event log
/// is fed to an engine in pieces by handing it these events with its clock just before that
/// instant, so that timers due there wait for the instant's events, while the events at the
/// last instant wait for the next piece, which may hold more at the same instant. 0 when there
/// are no events or all are at one instant. nudge::replay (with replay_options::batch_events)
/// and `nudge run` (each chunk of the events file) cut their pieces so.
std::size_t events_before_last_instant(std::span<const event> events) noexcept;

/// Writes the header `ts,contact,rule,action,arg` and one line per action
/// (`1704103200,c42,winback,send_email,winback`), each ending in '\n'. A field holding a comma,
/// a double quote or a line break is quoted as RFC 4180 says (`"Smith, John"`; nudge/io/csv.hpp).
void write_actions_csv(std::ostream& out, std::span<const due_action> actions,
                       time_format format = time_format::iso);
/// The lines of write_actions_csv, piece by piece: the header once, then each batch's actions
/// as they come (with replay_options::on_actions), into one reused buffer.
///
///     nudge::actions_csv_writer w{out, nudge::time_format::epoch};
///     options.on_actions = [&](auto actions) { w.write(actions); };
class actions_csv_writer {
 public:
  /// Writes the header line to `out`.
  actions_csv_writer(std::ostream& out, time_format format);
  /// Appends one line per action (what the stream does on failure is its own: check it).
  void write(std::span<const due_action> actions);

 private:
  std::ostream& out_;
  time_format format_;
  std::unique_ptr<char[]> buf_;  ///< lines formatted here, written to out_ a MiB at a time
  std::size_t capacity_ = 0;
};

}  // namespace nudge
